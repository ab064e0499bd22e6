"""The export formats and their file suffixes; torch-free, so that the command line can offer them as choices."""

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
