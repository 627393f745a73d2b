"""Audio-visual synchronisation metrics (analogues of Sync-C, Sync-D and DeSync)."""

from .sync import SyncReport, aggregate, format_table, shift_audio, sync_report, sync_report_for_clip

__all__ = ["SyncReport", "aggregate", "format_table", "shift_audio", "sync_report", "sync_report_for_clip"]
