"""Export: a model to ONNX or TorchScript, checked against the eager model (`effzoo.export.onnx`:
`export_model`, `check_export`, `read_metadata`, `OnnxRuntimeModel`), its int8 copy calibrated on
training images and kept only within an accuracy bound (`effzoo.export.quantize`: `export_int8`,
`quantize_onnx`), and the format names and file suffixes the command line offers (`effzoo.export.formats`).

Nothing is imported here: `effzoo export --help` reads `formats` without loading torch, and the
exporter is imported from `effzoo.export.onnx` by what uses it.
"""
