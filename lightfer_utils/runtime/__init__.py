"""The runtime side: faces, predictors for ONNX Runtime / TFLite / TensorRT (and Keras files, through
the safe loader, where TensorFlow is installed), the shipped models by name, benchmarks and the
`lightfer predict` command. It never imports TensorFlow unless a Keras file is asked for, and keeps
to Python 3.6 syntax for JetPack 4.6 (tests run vermin over this folder)."""
