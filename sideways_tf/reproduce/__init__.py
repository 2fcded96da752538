"""The papers' claims reproduced in miniature (`sideways-reproduce`): claims, runs, verdicts, report."""
