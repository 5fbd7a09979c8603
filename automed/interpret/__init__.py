"""Interpretability: attention maps of trained networks with medcam (Grad-CAM, Grad-CAM++, guided backpropagation,
guided Grad-CAM), brought back to the input image's geometry and drawn over it."""
