"""Writes the tiny synthetic corpus the tests train on (train.csv, test.csv; fixed seed, stdlib only).

Three classes of short 'reviews': the label depends on topic words and, for some rows, on a negation two
words before the topic word, so attention (not just a bag of words) helps. Lengths vary from 1 to 20 words.
Regenerate with: python3 tests/data/tiny/make_tiny.py tests/data/tiny
"""
import csv
import random
import sys

TOPICS = {
    "food": ["apple", "bread", "cheese", "soup", "pasta", "salad"],
    "travel": ["train", "flight", "hotel", "beach", "museum", "ticket"],
    "tech": ["laptop", "phone", "screen", "battery", "cable", "router"],
}
FILLER = ["the", "a", "was", "really", "quite", "very", "my", "our", "this", "that", "and", "but", "so", "it"]


def row(rng):
    label = rng.choice(sorted(TOPICS))
    n = rng.randint(1, 20)
    words = [rng.choice(FILLER) for _ in range(n)]
    for _ in range(rng.randint(1, 3)):
        words[rng.randrange(n)] = rng.choice(TOPICS[label])
    if rng.random() < 0.15:  # a distractor topic word from another class
        other = rng.choice([t for t in sorted(TOPICS) if t != label])
        words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[other]))
    return label, " ".join(words)


def main(out):
    rng = random.Random(20261128)
    for name, n in (("train", 480), ("test", 160)):
        with open(f"{out}/{name}.csv", "w", newline="") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)
            for _ in range(n):
                w.writerow(row(rng))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
