"""imagegen.diffusion"""
