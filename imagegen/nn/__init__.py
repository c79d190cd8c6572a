"""imagegen.nn"""
