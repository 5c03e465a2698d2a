"""Type names for the store's client objects, so every module spells them alike."""

from __future__ import annotations

from typing import Any, TypeAlias

from pymongo import AsyncMongoClient, InsertOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection
from pymongo.database import Database

Document: TypeAlias = dict[str, Any]
StoreClient: TypeAlias = MongoClient[Document]
StoreDatabase: TypeAlias = Database[Document]
StoreCollection: TypeAlias = Collection[Document]
AsyncStoreClient: TypeAlias = AsyncMongoClient[Document]
AsyncStoreCollection: TypeAlias = AsyncCollection[Document]
WriteOp: TypeAlias = InsertOne[Document] | ReplaceOne[Document] | UpdateOne
