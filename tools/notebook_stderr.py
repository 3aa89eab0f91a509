"""TensorFlow's start-up logging, taken out of executed notebooks before they are published.

On a machine without a GPU, importing TensorFlow writes a CUDA probe and oneDNN notices to the
kernel's stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says (they come before absl's logging is
initialised), and ``tqdm.auto`` warns that Jupyter widgets are missing. GitHub and the book show
them as red boxes in every chapter, though they say nothing about the run. Only those lines are
removed, counted in the notebook's provenance; any other stderr line stays, and the test of the
published notebooks fails on it.
"""

from __future__ import annotations

import re

BENIGN = re.compile(
    "|".join(
        [
            r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
            # TensorFlow's C++ log lines from the GPU probe and CPU-feature notices, by source file
            r"[IWE]\d{4} [\d:.]+\s+\d+ (cudart_stub|cuda_platform|cuda_executor|cuda_dnn|cuda_fft"
            r"|cuda_blas|cuda_diagnostics|port|cpu_feature_guard|util)\.cc:\d+\] .*",
            r"To enable the following instructions: .* rebuild TensorFlow with the appropriate "
            r"compiler flags\.",
            r".*/tqdm/auto\.py:\d+: TqdmWarning: IProgress not found\. .*",
            r"  from \.autonotebook import tqdm as notebook_tqdm",
        ]
    )
)


def remove_startup_noise(document) -> int:
    """Remove the ``BENIGN`` lines from every stderr stream of ``document`` (an nbformat
    notebook), dropping streams left empty; return how many lines were removed."""
    removed = 0
    for cell in document.cells:
        kept_outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = output["text"].splitlines(keepends=True)
                kept = [line for line in lines if not BENIGN.fullmatch(line.rstrip("\n"))]
                removed += len(lines) - len(kept)
                if not "".join(kept).strip():
                    continue
                output["text"] = "".join(kept)
            kept_outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept_outputs
    return removed
