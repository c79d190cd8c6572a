"""imagegen.cascade"""
