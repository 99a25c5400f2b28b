"""The training side: model builders, the input pipeline, training with resumable checkpoints, the
notebook-02 zoo, pruning, quantization, ONNX conversion, evaluation and shipping. Needs the `train`
extra (TensorFlow, tf_keras, tfmot, tf2onnx); it uses the runtime side, never the other way."""
