"""Metrics: IoU, mBA, boundary IoU, mask AP and boundary AP."""
