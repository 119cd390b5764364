"""Pure logic: typed events, timeline, trigger rules, pools, rollups, scorecard, charts, PR text, runs-on rewriter."""
