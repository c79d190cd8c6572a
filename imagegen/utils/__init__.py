"""imagegen.utils"""
