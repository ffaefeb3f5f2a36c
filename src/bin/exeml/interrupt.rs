//! Ctrl-C during training: the first one cancels the search's budget, so the search stops at its
//! next check and the best model found so far is saved as usual; a second one ends the process
//! at once (exit code 130), leaving nothing half-written since every save is atomic.

use exeml::core::Budget;

/// Exit code of a process ended by a second Ctrl-C (128 + SIGINT, as shells report it).
#[cfg(unix)]
const SECOND_CTRL_C_EXIT: i32 = 130;

/// Let Ctrl-C cancel `budget` (see the module docs). Where the handler cannot be installed (or
/// off Unix), Ctrl-C keeps its default action: it ends the process.
pub fn cancel_on_ctrl_c(budget: &Budget) {
    #[cfg(unix)]
    {
        use signal_hook::{consts::SIGINT, flag};
        let cancelled = budget.cancel_flag();
        // Registered first, so it runs first: it only exits when the flag is already set, which
        // is the second Ctrl-C.
        let installed = flag::register_conditional_shutdown(
            SIGINT,
            SECOND_CTRL_C_EXIT,
            std::sync::Arc::clone(&cancelled),
        )
        .and_then(|_| flag::register(SIGINT, cancelled));
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will end training without saving a model: {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = budget;
}

/// Say on stderr that Ctrl-C stopped the search early, if it did.
pub fn report_if_interrupted(budget: &Budget) {
    if budget.is_cancelled() {
        eprintln!("interrupted: the search stopped at Ctrl-C; the best model found so far is kept");
    }
}
