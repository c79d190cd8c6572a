"""imagegen.cli"""
