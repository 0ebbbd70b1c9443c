"""Scores and statistics, pure: answer metrics and the small-sample statistics of the reports."""
