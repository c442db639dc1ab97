"""ClassifierScorer on a tiny BERT whose weights are set by hand so that its top label is known for every text.

The model says "refuses" exactly when the text contains the token " cannot", anywhere within the first
`max_length` tokens, and "complies" otherwise; "other" never wins:

* word embeddings are zero except for " cannot" (a spike in dimension 0); position and type embeddings are zero,
  so after the embedding LayerNorm a " cannot" position holds a fixed vector v (v[0] > 0) and every other
  position holds 0;
* attention has zero queries and keys, so it averages the value vectors (identity) over the unmasked tokens:
  position 0 receives f * v, f = the share of " cannot" tokens; LayerNorm is scale-free, so it holds v if f > 0,
  else 0; the feed-forward block adds nothing;
* the pooler is tanh(identity), and the head scores "refuses" 10 * tanh(v[0]) against a bias of 1 for
  "complies" and 0.5 for "other".
"""

import pytest
import torch

from eval_bridge.models.tiny import build_tokenizer
from eval_bridge.scorers.classifier import ClassifierScorer

LABELS = {0: "complies", 1: "refuses", 2: "other"}
HIDDEN = 8


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = build_tokenizer()
    (trigger,) = tokenizer(" cannot")["input_ids"]
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=16,
        max_position_embeddings=128,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
        pad_token_id=tokenizer.pad_token_id,
    )
    model = BertForSequenceClassification(config)
    eye = torch.eye(HIDDEN)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
        model.bert.embeddings.word_embeddings.weight[trigger, 0] = 3.0
        layer = model.bert.encoder.layer[0]
        layer.attention.self.value.weight.copy_(eye)
        layer.attention.output.dense.weight.copy_(eye)
        model.bert.pooler.dense.weight.copy_(eye)
        model.classifier.weight[1, 0] = 10.0
        model.classifier.bias.copy_(torch.tensor([1.0, 0.0, 0.5]))
    path = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


TEXTS = [
    "I cannot help with that request",
    "sure here are the steps",
    "what is the colour of the shape in this picture on the left",
    "sorry I cannot",
    "yes",
]
REFUSES = [1, 0, 0, 1, 0]


def test_predict_follows_the_positive_labels(classifier_dir):
    assert ClassifierScorer(str(classifier_dir), ["refuses"]).predict(TEXTS) == REFUSES
    assert ClassifierScorer(str(classifier_dir), ["complies"]).predict(TEXTS) == [1 - r for r in REFUSES]
    assert ClassifierScorer(str(classifier_dir), ["other"]).predict(TEXTS) == [0] * len(TEXTS)
    assert ClassifierScorer(str(classifier_dir), ["refuses", "complies"]).predict(TEXTS) == [1] * len(TEXTS)


def test_top_labels_are_the_models_label_names(classifier_dir):
    scorer = ClassifierScorer(str(classifier_dir), ["refuses"])
    assert scorer.top_labels(TEXTS) == ["refuses" if r else "complies" for r in REFUSES]


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_batching_and_padding_do_not_change_predictions(classifier_dir, batch_size):
    scorer = ClassifierScorer(str(classifier_dir), ["refuses"], batch_size=batch_size)
    assert scorer.predict(TEXTS) == REFUSES
    assert scorer.predict(TEXTS[::-1]) == REFUSES[::-1]


def test_texts_are_truncated_to_max_length(classifier_dir):
    text = "what is the colour of the shape " * 4 + "I cannot"  # " cannot" is token 30 or so
    assert ClassifierScorer(str(classifier_dir), ["refuses"], max_length=64).predict([text]) == [1]
    assert ClassifierScorer(str(classifier_dir), ["refuses"], max_length=8).predict([text]) == [0]


def test_model_is_in_eval_mode_and_id_names_model_and_labels(classifier_dir):
    scorer = ClassifierScorer(str(classifier_dir), ["refuses", "other"], device="cpu")
    assert not scorer.model.training
    assert scorer.id == f"hf-classifier:{classifier_dir}[refuses,other]"
    assert scorer.predict([]) == []


def test_unknown_positive_label_lists_the_models_labels(classifier_dir):
    with pytest.raises(ValueError, match=r"LABEL_4.*\['complies', 'refuses', 'other'\]"):
        ClassifierScorer(str(classifier_dir), ["LABEL_0", "LABEL_4"])


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot load classifier"):
        ClassifierScorer(str(tmp_path / "nope"), ["LABEL_0"])
