"""l2ul: instance-wise machine unlearning of pre-trained image classifiers."""
__version__ = "0.1.0"
