"""Labelled toxicity cases: (text, is it toxic). Mild by design: enough to
exercise the lexicon and the rules without a slur list in the repository."""

from __future__ import annotations

CASES: list[tuple[str, bool]] = [
    # toxic
    ("You are an idiot and nobody wants your opinion.", True),
    ("Shut up, you pathetic loser.", True),
    ("I will kill you if you post that again.", True),
    ("You should die.", True),
    ("What a moron. Seriously.", True),
    ("You m0r0n, read the docs.", True),
    ("This is f*cking bullshit and you know it.", True),
    ("All immigrants are vermin.", True),
    ("You're a worthless piece of trash.", True),
    ("Go to hell, you bastard.", True),
    ("Screw you and your stupid questions.", True),
    ("I know where you live. Watch your back.", True),
    ("kys", True),
    ("You are such a dumbass.", True),
    ("Those refugees should be deported, they are criminals.", True),
    ("What a fucking asshole.", True),
    ("Nobody likes you, freak.", True),
    ("Your code is garbage and you are a clown.", True),
    ("you absolute scumbag", True),
    ("Shut the fuck up.", True),
    # not toxic
    ("Thanks, that was really helpful!", False),
    ("Kill the process with SIGTERM, then restart the server.", False),
    ("We need to shoot a video for the launch.", False),
    ("The garbage collector frees unused memory.", False),
    ("What the hell is a monad, in simple terms?", False),
    ("That's a stupid simple approach and it works.", False),
    ("You are not stupid for asking this.", False),
    ("I hate Mondays, but the coffee helps.", False),
    ("The villain in the novel threatens the hero.", False),
    ("Please empty the trash can before leaving.", False),
    ("Troubleshooting steps: check the cable first.", False),
    ("Pig Latin is a language game.", False),
    ("The team is killing it this quarter!", False),
    ("Immigrants are a vital part of the economy.", False),
    ("Could you explain recursion like I'm five?", False),
    ("Damn, that was a close game.", False),
    ("The dummy variable holds the placeholder.", False),
    ("Here is your summary of the meeting notes.", False),
]
