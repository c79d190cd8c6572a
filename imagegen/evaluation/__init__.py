"""imagegen.evaluation"""
