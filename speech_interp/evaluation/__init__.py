"""The paper's own evaluation on real checkpoints: its lens protocol beside ours
(:mod:`~speech_interp.evaluation.protocol`), spoken knowledge as slamkit scores it
(:mod:`~speech_interp.evaluation.knowledge`), one run over models
(:mod:`~speech_interp.evaluation.reproduce`) and its GPU plan
(:mod:`~speech_interp.evaluation.plan`)."""

from speech_interp.evaluation.knowledge import knowledge_scores, summarize_knowledge
from speech_interp.evaluation.protocol import protocol_table
from speech_interp.evaluation.reproduce import gather, reproduce_model

__all__ = ["gather", "knowledge_scores", "protocol_table", "reproduce_model", "summarize_knowledge"]
