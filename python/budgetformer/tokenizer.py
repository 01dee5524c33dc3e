"""prepare's tokenizer (docs/DATA.md, "Normalisation and tokens") with a checkpoint's vocabulary.

    tok = model.tokenizer
    tok.tokens("Don't panic, it's 3.14!")   # ['don', "'", 't', 'panic', ',', 'it', "'", 's', '3', '.', '14', '!']
    tok.encode("Don't panic")               # the ids prepare writes for that text: [ids...], 1..max_len of them

Works on the UTF-8 bytes exactly as src/text/tokenize.c does: ASCII letters are lowercased; a word is a maximal
run of ASCII letters, ASCII digits and non-ASCII characters; every other printable ASCII character is a token
by itself; space and control characters separate tokens. The first max_len tokens are kept; a text without
tokens becomes one <unk>. Unknown words map to <unk> (1).
"""
import re

PAD_ID, UNK_ID = 0, 1
_TOKEN = re.compile(rb"[A-Za-z0-9\x80-\xff]+|[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]")


class Tokenizer:
    def __init__(self, vocab, max_len):
        self.vocab = list(vocab)
        if len(self.vocab) < 2 or self.vocab[0] != "<pad>" or self.vocab[1] != "<unk>":
            raise ValueError("vocabulary must start with '<pad>', '<unk>'")
        self.max_len = int(max_len)
        self.ids = {}
        for i, w in enumerate(self.vocab):
            b = w.encode("utf-8")
            if b in self.ids:
                raise ValueError("vocabulary lists '%s' twice (ids %d and %d)" % (w, self.ids[b], i))
            self.ids[b] = i

    @staticmethod
    def _bytes(text):
        if isinstance(text, bytes):
            text.decode("utf-8")  # raises UnicodeDecodeError for what prepare refuses as invalid UTF-8
            return text
        return text.encode("utf-8")  # raises for lone surrogates

    def tokens(self, text):
        """Every normalised token of text (str, or UTF-8 bytes), before truncation."""
        return [t.lower().decode("utf-8") for t in _TOKEN.findall(self._bytes(text))]

    def encode(self, text):
        """The token ids prepare and predict give for text: 1..max_len ids, no padding."""
        ids = [self.ids.get(t.lower(), UNK_ID) for t in _TOKEN.findall(self._bytes(text))[:self.max_len]]
        return ids or [UNK_ID]

    def __len__(self):
        return len(self.vocab)
