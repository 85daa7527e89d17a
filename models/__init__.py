"""Model code for the pipeline's training step (Keras on tf_keras, as TFX/TFMA 1.16 expect)."""
