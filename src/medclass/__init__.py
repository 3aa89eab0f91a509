"""medclass: the helper package of the book "Medical image classification with Keras
transfer learning". The notebooks narrate; this package does the work."""

__version__ = "0.1.0"
