"""TSGSV: temporal sentence grounding in streaming videos with TwinNet (ACM MM 2023, arXiv 2308.07102)."""
