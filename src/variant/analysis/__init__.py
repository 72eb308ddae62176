"""The paper's analyses in miniature: scale-depth asymmetry and quality/cost fronts."""
