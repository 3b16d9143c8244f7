"""Op types with no gradient that belong to no rule family.

Strings, parsing, readers, lookup tables, summaries, bitwise arithmetic and
the other ops below produce no real-valued function of their inputs (or one
TensorFlow does not differentiate): backprop treats their outputs as
constants. Each type here is one TensorFlow itself declares not
differentiable.
"""

from tfgrad.ops.registrars import def_not_differentiable

NOT_DIFFERENTIABLE = (
    # Strings
    "AsString", "DecodeBase64", "EncodeBase64", "ReduceJoin", "RegexReplace",
    "StringJoin", "StringSplit", "StringToHashBucket",
    "StringToHashBucketFast", "StringToHashBucketStrong",
    # Parsing and serialisation
    "DecodePaddedRaw", "DecodeRaw", "ParseTensor", "SerializeTensor",
    "StringToNumber", "DecodeProtoV2", "EncodeProto",
    # Readers
    "FixedLengthRecordReader", "IdentityReader", "LMDBReader",
    "TFRecordReader", "TextLineReader", "WholeFileReader",
    "ReaderNumRecordsProduced", "ReaderNumWorkUnitsCompleted", "ReaderRead",
    "ReaderReadUpTo", "ReaderReset", "ReaderRestoreState",
    "ReaderSerializeState",
    # Lookup tables
    "HashTable", "HashTableV2", "MutableDenseHashTable",
    "MutableDenseHashTableV2", "MutableHashTable", "MutableHashTableV2",
    "MutableHashTableOfTensors", "MutableHashTableOfTensorsV2",
    "InitializeTable", "InitializeTableV2", "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2", "LookupTableFind", "LookupTableFindV2",
    "LookupTableInsert", "LookupTableInsertV2", "LookupTableSize",
    "LookupTableSizeV2",
    # Summaries, logging and assertions
    "AudioSummary", "AudioSummaryV2", "HistogramSummary", "ImageSummary",
    "MergeSummary", "ScalarSummary", "TensorSummary", "TensorSummaryV2",
    "Timestamp", "Assert",
    # Bitwise arithmetic
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Invert", "LeftShift",
    "RightShift", "PopulationCount",
    # CTC decoding
    "CTCBeamSearchDecoder", "CTCGreedyDecoder",
    # SDCA optimizer
    "SdcaFprint", "SdcaOptimizer", "SdcaOptimizerV2", "SdcaShrinkL1",
    # Checkpoint remapping
    "GenerateVocabRemapping", "LoadAndRemapMatrix",
    # Python functions (graph mode)
    "PyFunc", "PyFuncStateless",
    # Ragged, datasets, audio, XLA and TPU
    "RaggedRange", "ReduceDataset", "AudioMicrofrontend",
    "XlaVariadicReduce", "TPUReplicatedInput",
)

def_not_differentiable(*NOT_DIFFERENTIABLE)
