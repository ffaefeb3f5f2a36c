//! `exp` for `f32` without a branch or a call, so that loops over it vectorise (libm's `expf`
//! is a scalar call per value: half of a ViT's softmax). Written by hand because the crates
//! that offer a SIMD `exp` bring their own vector types, where this one stays a plain function
//! the compiler vectorises inside the callers' `multiversion` loops.

/// Below this, `exp` is under `f32`'s smallest normal value and is returned as 0.
const LOWEST: f32 = -87.336_55;
/// Above this, `exp` overflows `f32`; the input is clamped here (`exp` ≈ 3.4·10³⁸).
const HIGHEST: f32 = 88.376_26;
/// 1.5·2²³: a float this large has no fraction bits, so adding it rounds to an integer.
const ROUNDING: f32 = 12_582_912.0;

/// `eˣ` within 2 ulp over `f32`'s normal range (Cephes' `expf`: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, a degree-7 polynomial for `eʳ`, and `2ⁿ` put into the exponent bits);
/// 0 below `−87.3`, where the exact value is subnormal or zero. NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(LOWEST, HIGHEST);
    // n = round(x / ln 2), as a float and as an integer, without a conversion instruction
    // (Rust's saturating `as i32` does not vectorise): adding 1.5·2²³ leaves n in the low bits.
    let shifted = clamped * std::f32::consts::LOG2_E + ROUNDING;
    let n = shifted - ROUNDING;
    let whole = shifted.to_bits() as i32 - ROUNDING.to_bits() as i32;
    // ln 2 in two parts, so that n·ln 2 is subtracted without rounding away r's low bits.
    let r = clamped - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = p * r + c;
    }
    let er = p * r * r + r + 1.0;
    // n ∈ [−126, 128]: 2ⁿ as the bits of a normal f32 (n = 128 only at the clamp, where
    // er < 1 keeps the product finite through the split below).
    let half = f32::from_bits(((whole / 2 + 127) as u32) << 23);
    let rest = f32::from_bits(((whole - whole / 2 + 127) as u32) << 23);
    let value = er * half * rest;
    if x < LOWEST {
        0.0
    } else if x.is_nan() {
        x
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::{exp, HIGHEST};

    #[test]
    fn matches_libm_within_two_ulp_over_the_normal_range() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.3 {
            let (ours, exact) = (f64::from(exp(x)), f64::from(x).exp());
            worst = worst.max(((ours - exact) / exact).abs());
            x += 0.001_3;
        }
        // 2 ulp of f32 is 2·2⁻²³ ≈ 2.4·10⁻⁷ relative.
        assert!(worst < 2.4e-7, "worst relative error {worst}");
    }

    #[test]
    fn edges_are_zero_finite_or_nan_as_the_exact_value_rounds() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(88.3).is_finite() && exp(88.3) > 1e38);
        // Beyond the largest finite result the input is clamped, as documented.
        assert_eq!(exp(1000.0), exp(HIGHEST));
        assert!(exp(HIGHEST).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }
}
