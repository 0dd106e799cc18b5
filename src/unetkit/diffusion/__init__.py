"""Denoising diffusion around the U-Net: noise schedules, training objectives, samplers.

Pure functions of tensors and a denoiser callable; no model state lives here
(the network is models/diffusion_unet.py, its training loop diffusion/training.py).
"""
