"""The concept chapters' helpers: what a convolution computes (``convolution``), a residual
network learned from scratch (``residual``), and the transfer-learning strategies compared
(``transfer``). The case studies do not use them.

First used in chapter "Convolutional networks" (notebooks/concepts_01_cnn.ipynb).
"""
