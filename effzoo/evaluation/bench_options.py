"""The choices `effzoo benchmark` offers; torch-free, so that the command line can list them without loading torch."""

BENCHES = ("infer", "train", "both")
RUNTIMES = ("torch", "onnxruntime")
TRAIN_PRECISIONS = ("32-true", "bf16-mixed")  # the `effzoo train --precision` values a CPU step can use
