"""Storage: the only package that imports TinyDB. See store.py for the public ``Store``."""
from appliance.storage.backup import backup, restore
from appliance.storage.crypto import EncryptedChunkSink, export_recording
from appliance.storage.migrations import SCHEMA_VERSION, SchemaTooNewError
from appliance.storage.models import (
    Alarm,
    AlarmKind,
    Channel,
    Conversation,
    ConversationState,
    Customer,
    Interaction,
    Message,
    SyncInfo,
    SyncState,
)
from appliance.storage.retention import ErasureReport, RetentionPolicy, RetentionReport
from appliance.storage.store import Store, StoreClosedError

__all__ = [
    "Alarm", "AlarmKind", "Channel", "Conversation", "ConversationState", "Customer", "EncryptedChunkSink",
    "ErasureReport", "Interaction", "Message", "RetentionPolicy", "RetentionReport", "SCHEMA_VERSION",
    "SchemaTooNewError", "Store", "StoreClosedError", "SyncInfo", "SyncState", "backup", "export_recording", "restore",
]
