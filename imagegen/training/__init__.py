"""imagegen.training"""
