"""The log's contract: the Avro command schemas (every version ever written) and their codec."""
