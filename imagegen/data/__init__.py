"""imagegen.data"""
