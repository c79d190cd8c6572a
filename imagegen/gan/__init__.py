"""imagegen.gan"""
