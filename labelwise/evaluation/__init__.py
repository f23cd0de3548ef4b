"""evaluation: metrics, thresholds, baselines, scoring"""
