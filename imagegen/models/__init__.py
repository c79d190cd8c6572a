"""imagegen.models"""
