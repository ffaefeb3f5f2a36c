"""A copy of an image model without its fitted temperature: the same decisions (a multi-label
model's thresholds are kept on the unscaled probabilities), only the probabilities differ. The
vision benchmarks evaluate both to show what calibration gained (docs/images.md, step 4).

    python3 uncalibrated.py MODEL    # writes MODEL-raw and prints its path
"""

import json
import os
import shutil
import sys


def copy_without_temperature(model: str) -> str:
    """Copy the model folder `model` to `model-raw` (replacing an earlier copy) and delete the
    temperature from the copy's manifest. Returns the copy's path."""
    raw = model.rstrip("/") + "-raw"
    shutil.rmtree(raw, ignore_errors=True)
    shutil.copytree(model, raw)
    path = os.path.join(raw, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    manifest.pop("temperature", None)
    with open(path, "w") as f:
        json.dump(manifest, f)
    return raw


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: uncalibrated.py MODEL")
    print(copy_without_temperature(sys.argv[1]))
