"""Training stages for TMICS; flow.py pre-trains the PyramidFlowNet flow estimator on synthetic motion."""
