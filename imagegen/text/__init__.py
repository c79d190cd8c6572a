"""imagegen.text"""
