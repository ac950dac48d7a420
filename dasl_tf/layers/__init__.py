"""Keras layers of DASL (paper section 3), usable in any tf_keras model."""
