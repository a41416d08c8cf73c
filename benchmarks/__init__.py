"""Benchmarks: each script writes JSON + Markdown into benchmarks/results/ with the machine it ran on."""
