"""Loop benchmark: rounds of sampling, simulated annotation over HTTP, DPO training and evaluation on the toy model.

Runs the whole of Chisel's loop on the CPU, through the real services and API:

1. drops and recreates a PostgreSQL database (default `chisel_bench_loop`), migrates it, and starts gunicorn;
2. for each oracle (`--oracle`, `textured` by default, at `--noise`; then the `random` control): a taste on the pretrained toy model
   (`manage.py toy_model build`), `--rounds` rounds of `--labels` train labels each, started with
   `annotate.loop.round_start`, driven by the beat's own tasks (`advance_rounds`, `refill_sample_buffers`;
   Celery runs them eagerly in this process), judged by `manage.py simulate_annotators` over HTTP;
3. on held-out prompts and seeds, compares the final checkpoint with the base: the oracle's win rate on the *same*
   (prompt, seed) and on *independent* seeds (a tie counts half), the flat-background share and caption
   adherence before and after; the control's final checkpoint is judged by the same oracle too. Each loop's
   last trained child, promoted or not, is judged as well ("child same-seed"): what the labels did to the model
   before the promotion gate had its say; and every child the control trained, since one random-label child's
   same-seed score is a single draw of a wide spread (session 13, below);
4. prints a table and, as its last line, one JSON object with the same figures.

Targets (issue 7): same-seed win >= 95%, independent-seed win >= 80%, control within 50 +/- 10%, adherence at
most 5 points below the base's, all in under 20 minutes on 2 cores. Since issue 17 the control's figure is the
main oracle's same-seed score of the control's last *trained* child (promoted or not; its final checkpoint is
the base whenever the gate rejects everything, and scores 50% by construction), still 50 +/- 10%, beside the share
of control rounds promoted. Each round also shows its child's win rate against the base, measured head-to-head by
the simulated annotators (`decision["cumulative"]`: its eval pairs in round 1, its child-vs-base pairs after) and as
implied by Bradley–Terry strengths over all the taste's eval and child-vs-base judgements
(`annotate.dashboard.checkpoint_strengths`), each with its 95% interval (`cumulative_vs_base` and
`cumulative_vs_base_bt` in the JSON line). The toy world now holds out 6 captions, not 3, so that the clustered gate
(t on prompts − 1 degrees of freedom) has power (docs/evaluation.md, *Defaults of the demo and the loop bench*). The
first block below was measured after issue 17 (the clustered gate, 6 held-out captions, child-vs-base pairs); the
rows after it before, with the gate's old Wilson interval over judgements and 3 held-out captions.

After issue 17, `models/toy-sd`, the defaults of the time (λ 50) with the control (18.2 min on 2 cores, run under
`nice` beside other work; `--database-url …/chisel_bench_loop_h2`): every target met.

    round  eval win [low]   vs base measured (95%)   vs base Bradley–Terry (95%)   promoted
    textured 1   0.901 [0.797]   0.901 [0.797, 1.000]   0.829 [0.741, 0.901]       yes
    textured 2   0.932 [0.841]   0.938 [0.866, 1.000]   0.967 [0.929, 0.989]       yes
    textured 3   0.958 [0.872]   0.958 [0.888, 1.000]   0.997 [0.988, 1.000]       yes
    random 1     0.604 [0.427]   0.604 [0.427, 0.781]   0.603 [0.467, 0.741]       no
    random 2, 3  0.542 [0.370], 0.542 [0.331]   (the parent is still the base: the eval pairs are the measure)   no
    final checkpoint: same-seed 100%, independent seeds 88.3%, flat backgrounds 65.8 → 10.8%, adherence 100 → 97.5%;
    control: 0 of 3 rounds promoted, its last trained child scores 57.5% same-seed (target 50 ± 10%)

`--oracle dark` (issue 18: any taste; `models/toy-sd`, the same λ 50 defaults, 8.4 min with the control on 2 cores):
same-seed 100%, independent seeds 70.8% (target 80%: not met), adherence 100 → 97.9%; rounds 1 and 2 promoted
(eval wins 0.948, 0.917; measured against the base 0.948, 0.969), round 3 rejected (0.573). The control promoted
no round (wins 0.55, 0.53, 0.53) but the dark oracle prefers its last trained child on 98.8% of seeds (target
50 ± 10%: not met). Two more control runs (`--oracle dark --only-control`, 3-4 min) scored 31.7% and 54.6%: their
children moved brightness by −1.5%, −1.3%, +0.4% and by −0.2%, −0.5%, −0.0% (their `ai_look` figures), and the dark
oracle, reading the mean of the whole image with a 0.001 tie margin, sees a move that small on most seeds. On
independent seeds (now printed beside it) the last one's child scored 48.8%. The random-label drift is small and of
either sign; the same-seed control figure magnifies it for a continuous oracle (docs/training.md). Since session 11
the dark oracle ties a pair whose mean luminance differs by less than 2% (Weber's fraction, as a person would); with
it, the same command (8.1 min): same-seed 99.6%, independent 70.8% (not met), adherence 100 → 97.9%, rounds 1 and 2
promoted (brightness −6.5%, −3.3%), round 3 rejected on adherence; the control promoted none and its last trained
child scores 49.6% same-seed, 48.3% independent (met). The FLUX runs of both oracles are in the FLUX blocks below.

Session 14: λ 50 was chosen for `textured` and held `dark` to 70.8%, so the SD winner term is now λ 10, one recipe for
both tastes (docs/training.md, *Session 14*). `--oracle dark`, one run a line (5-10 min on 2 cores):

    λ                      same    indep.  flat        adherence     promoted   control's last child same / indep.
    25                     99.6%   77.9%   65.8→97.1%  100→97.1%     1, 3       (2: adherence −9.4)
    10                     100%    86.7%   65.8→82.9%  100→99.6%     1
    10, with the control   100%    96.2%   65.8→92.5%  100→99.2%     1, 2       50.0% / 48.3% (children 42.5, 50.0, 50.0%)

`textured` at λ 10, three runs in a row with the control (the third with the new defaults, no flag; 9.3-10.6 min):

    run   same    indep.  flat        adherence     promoted   control's children, same seeds    independent
    1     100%    85.8%   65.8→9.6%   100→98.8%     1, 2       45.4, 56.7, 62.1% (missed)        43.3, 48.8, 45.4%
    2     100%    80.0%   65.8→14.2%  100→97.9%     1, 2       90.8, 58.3, 51.7%                 47.9, 48.3, 45.0%
    3     100%    90.0%   65.8→6.2%   100→98.8%     1, 2       70.4, 7.9, 46.2%                  47.1, 39.2, 44.2%

Round 3 lost 10-15 points of adherence in each run (texture over the shapes) and the adherence rail rejected it; at
λ 50 all three rounds were promoted. No control round was promoted. The same session's `dark` run on
`models/toy-flux` (its defaults unchanged, 7.7 min): 100% / 89.2%, adherence 100→99.2%, rounds 1, 2, 3 promoted, the
control's children 42.5, 62.1, 52.9% on the same seeds (47.9-50.4% independent): every target met.
`--model models/toy-flux --keep best` (early stopping on the held-out DPO loss; 8.4 min): 93.8% / 63.3%; textured
rounds 2 and 3 and every control round kept the untrained adapter (step 0), so the control's children were the base
(50.0% by construction) and the loop's later children their parents (eval wins 0.526, 0.500).
Two more runs of the FLUX `textured` defaults (8.1 min each): 99.2% / 78.8% (control's children 71.7, 75.4, 44.2%)
and 95.4% / 78.8% (61.3, 67.1, 62.9%), round 3 rejected on adherence in both; over ten runs of these defaults the
independent-seed figure spans 72.1-90.8%, six of ten at 80% or more.

Session 15: why the control's child drifts. In a control round of the FLUX defaults the child's errors on its own
train pairs end 9.8-13.9% above the parent's (winners and losers alike, `metrics.jsonl`): DPO leaves their common
rise free, and a worse denoiser leaves busier backgrounds, which `textured` reads as texture; the labels' chance lean
(the winners' mean `textured` score minus the losers') does not predict the child's score. `--anchor-weight γ` adds
γ times that mean rise to the loss (docs/training.md, *Session 15*). `--model models/toy-flux`, one run a line
("control only": `--only-control`, 4.5-5 min; the others 7.7-11.3 min with the control):

    γ, change           same   indep.  flat        adherence  promoted  control's children (same seeds)  error rise
    0 (the defaults)    98.8%  89.2%   52.5→0.4%   100→97.1%  1, 2, 3   62.5, 76.7, 71.7% (missed)       10.3-13.9%
    0, control only     -      -       -           -          -         56.2, 77.1, 45.8%                9.8-12.2%
    5                   96.2%  72.9%   52.5→11.7%  100→100%   1, 2, 3   52.9, 78.3, 54.2%                5.4-6.2%
    10                  95.4%  75.8%   52.5→10.4%  100→100%   1, 2, 3   44.6, 44.6, 55.0%                3.7-4.9%
    10, control only    -      -       -           -          -         50.0, 77.9, 58.3%                3.7-4.2%
    10, control only    -      -       -           -          -         66.2, 65.4, 49.2%                4.3-5.3%
    20                  90.4%  62.5%   52.5→31.2%  100→100%   1, 2      55.4, 47.1, 50.4%                1.7-2.6%
    20, control only    -      -       -           -          -         45.4, 40.4, 56.7%                2.4-3.4%
    10, 600 steps       88.3%  66.7%   52.5→18.3%  100→100%   1, 2, 3   77.5, 79.2, 67.9% (missed)       4.1-4.6%
    10, attention + ff  90.0%  72.9%   52.5→10.0%  100→100%   1, 2, 3   75.4, 77.1, 51.7%                8.6-10.6%
    10, lr 4.5e-3       90.0%  69.6%   52.5→16.7%  100→100%   1, 2      66.2, 47.9, 65.8% (missed)       7.2-9.1%
    10, 8 pairs a step  90.0%  70.0%   52.5→19.6%  100→100%   1, 2, 3   66.7, 32.9, 54.2%                3.2-4.0%

The anchor holds the control (6 of 9 children within 50 +/- 10 at γ 10, 6 of 6 at γ 20, about 1 in 3 without) and
the shapes (100% adherence in every anchored run, no round rejected on adherence), but it holds the loop's own
rounds as much: 62.5-75.8% on independent seeds. Their errors rise more than the control's (19.2-27.5% in the
defaults' run): dropping the flat mode is itself a rise of the error on the parent's samples, which
KL(parent || child), covering modes, charges for. The defaults keep γ 0.

Session 16: two remedies that should tell drift from learning, each measured once and taken out again
(docs/training.md, *Session 16*), a smaller LoRA, then the defaults again. KL(child || parent) on the child's own
samples (η 10; DPOK's and Flow-GRPO's pull, mode-seeking) charged the loop's rounds as much as the control's, since a
textured round sharpens backgrounds past anything the base draws. The element-wise median of 3 batches' gradients a
step (coherent gradients, M3) left the control fitting its random labels, likely because Adam rescales what the
median damps. A rank-2 LoRA fitted fewer random labels and drifted as far. `--model models/toy-flux`, with the control:

    change                 same   indep.  flat        adherence  promoted  control's children (same seeds)  min
    self-KL η 10 ¹         89.2%  66.2%   52.5→25.8%  100→100%   1, 3      66.7, 34.2, 57.9%                11.3
    gradient median 3 ²    95.0%  77.1%   52.5→11.2%  100→100%   1, 2      61.3, 52.5, 53.8%                14.3
    rank 2 (`--rank 2`)    93.8%  71.7%   52.5→10.8%  100→99.6%  1, 2      72.5, 43.3, 70.0% (missed)       9.5
    defaults, run 1        98.8%  88.3%   52.5→2.1%   100→95.4%  1, 2, 3   61.3, 45.0, 57.5%                8.9
    defaults, run 2        100%   91.7%   52.5→3.3%   100→95.0%  1, 2, 3   59.2, 82.5, 77.1% (missed)       8.8
    defaults, run 3        99.6%  94.2%   52.5→1.7%   100→98.8%  1, 2, 3   43.3, 65.8, 73.3% (missed)       9.0
    defaults, run 4        97.5%  77.5%   52.5→10.8%  100→100%   1, 2      67.5, 72.9, 55.8%                9.5
    defaults, run 5        98.3%  79.2%   52.5→10.0%  100→100%   1, 2      69.2, 55.4, 51.7%                9.5
    defaults, run 6        97.5%  88.3%   52.5→3.3%   100→99.2%  1, 2, 3   64.2, 56.7, 75.8% (missed)       9.2
    defaults, run 7        98.3%  80.0%   52.5→4.6%   100→100%   1, 2      57.9, 77.5, 62.9% (missed)       9.5
    defaults, run 8        97.5%  83.8%   52.5→5.4%   100→99.6%  1, 2      35.4, 77.9, 59.6%                9.0
    defaults, run 9        94.2%  78.3%   52.5→12.5%  100→99.6%  1, 2      49.2, 51.7, 52.9%                9.3

Round 3 moves the independent-seed figure: promoted (runs 1, 2, 3, 6), 88.3-94.2%; rejected on adherence (the
others), 77.5-83.8%. Over the 20 runs of these defaults with the control since session 12, every target was met at
once in 5 and the control's last child was within 50 +/- 10 in 11.

¹ `git checkout 2b297fb`, `--self-kl-weight 10`. ² `git checkout aaf3f02`, `--gradient-median 3`.

Session 17: what the control's same-seed figure measures (docs/training.md, *Session 17*; `bench/drift.py` on the
runs' children). A random-label child scoring 62.1% scores 54.2, 56.2 and 58.3% with its LoRA scaled by 0.125, 0.25 and
0.5, and 58.3% reversed (x -1); random moves of the same size, with no training, score 48.8, 39.2 and 50.8%. The lean
comes from flat backgrounds, whose spread rises by a median 6-11% of 3.9 grey levels, far below what a person sees,
where the 0.001 margin is about 0.01 grey level. A person's contrast threshold in the annotators (10%, one grey level;
`git checkout 54bc5c7`) did not hold the control (42.1, 66.2, 69.6%: some children leave visible noise) and cost the
loop (91.7% / 76.2%), so it was reverted. Two thirds of a random-label child's leftover noise is made in the last six
of the 20 sampling steps (sigma 0.41 to 0.08), which the trainer seldom draws; a real child's wins are decided
earlier, but a quarter of its added texture is made there too. A hold on the child's predictions at low noise
(`git checkout a0b3111`, `--low-noise-weight`, `--low-noise-below`) held the control and the loop alike:

    change                     same   indep.  flat        adherence  promoted  control's children (same seeds)  min
    perceptual annotator ¹     91.7%  76.2%   52.5→10.0%  100→99.6%  1         42.1, 66.2, 69.6% (missed)       8.9
    low-noise hold η 1000 ²    96.7%  62.9%   52.5→30.0%  100→100%   1, 2, 3   49.6, 46.7, 51.7%                11.3
    low-noise hold η 100 ²     96.7%  69.2%   52.5→19.6%  100→100%   1, 2, 3   67.9, 37.5, 47.5%                11.4
    hold η 1000, below 0.15 ²  94.2%  62.5%   52.5→32.5%  100→100%   1, 2, 3   60.4, 56.7, 46.2%                10.4
    lr 1.5e-3, 900 steps       (control only)                                  62.1, 60.8, 53.3%                7.9
    defaults, run d1           98.3%  80.0%   52.5→7.1%   100→99.2%  1, 2      54.2, 62.1, 56.2%                16.1 ³
    defaults, run d2           88.8%  71.7%   52.5→15.8%  100→99.6%  1, 3      39.6, 72.1, 58.8%                8.5
    defaults, run d3           99.2%  90.4%   52.5→0.8%   100→95.0%  1, 2, 3   62.5, 54.2, 74.2% (missed)       8.3
¹ `git checkout 54bc5c7`. ² `git checkout a0b3111`, `--low-noise-weight η [--low-noise-below 0.15]`. ³ beside the
one-off scripts. Over the defaults' 23 runs with the control since session 12, every target was met at once in
6 (passes in order: ✓·✓··✓·····✓······✓·✓··); three in a row is not met.

Session 18: a carry-over test in the trainer (docs/training.md, *Session 18*). A round keeps its trained adapter only
when more of its 34 held-out pairs lean towards their labelled winner than coin flips would give (the sign of each
pair's DPO margin averaged over 8 noise draws; an exact one-sided binomial test at α 0.05, `carry_over_alpha`, now in
both toy defaults); a round that fails keeps its parent and ends unevaluated. Before it (old defaults), the
`textured` rounds ranked 0.71-0.85 of their held-out pairs as labelled in rounds 1-2 and 0.56-0.74 in round 3, the
random-label rounds 0.35-0.56. With it, one run a line, with the control (a1, s1, a2 read one draw a pair):

    run  model, oracle   same    indep.  adherence  promoted  held-out right (of 34)  control's   control's adapters as if kept  min
    a1   FLUX textured   94.2%   81.7%   100→99.2%  1, 3      28, 30, 28              15, 19, 15  —                              9.9
    s1   SD textured     100%    82.5%   100→98.8%  1, 2      31, 26, 22 (ended)      20, 17, 15  —                              12.3
    a2   FLUX textured   96.7%   74.2%   100→99.6%  1, 3      27, 21 (ended), 23      19, 22, 15  —                              8.3
    b1   FLUX textured   96.7%   76.7%   100→99.2%  1, 2      27, 25, 26              20, 15, 19  63.3, 44.2, 62.1%              10.7
    k1   FLUX dark       100%    83.8%   100→96.2%  1, 2, 3   25, 28, 31              15, 15, 16  51.7, 34.2, 26.7%              9.2
    s2   SD dark         100%    82.1%   100→97.1%  1         26, 29, 33              15, 13, 14  44.2, 65.8, 50.0%              17.3
    b2   FLUX textured   94.2%   81.7%   100→99.6%  1, 2      31, 24, 27              15, 15, 20  42.9, 42.5, 49.2%              9.8
    b3   FLUX textured   97.1%   81.7%   100→97.9%  1, 3      28, 22 (ended), 26      16, 17, 21  77.9, 69.2, 71.7%              9.9
No control adapter passed the test, so the control's child is its parent (50% by construction) in every run; the
adapters it declined, scored as if kept, drift as in sessions 13-17. Of the five FLUX `textured` runs, b3 met every
target; the others missed the loop's own 95% / 80%, when a round was rejected on adherence or ended by the test.

Session 19 (docs/training.md, *Session 19*): the simulated annotators of a taste first take the image that shows its
caption and flag the other "doesn't match the prompt" (`--ignore-prompt`: the taste alone; the final comparison is
still the taste alone), and the carry-over test is Wilcoxon's signed-rank test of the same margins (exact under coin
labels; on p1's and p2's twelve saved adapters it passed the round the count of signs ended, p2's third at 22 of 34,
p 0.061 -> 0.007, and none of the six random-label ones, p 0.084-0.951). One run a line, with the control (p1, p2:
the count of signs, `git checkout 4110a4c`):

    run  model, oracle   same    indep.  adherence  promoted           held-out right  control's   control's adapters as if kept  min
    p1   FLUX textured   98.3%   90.4%   100→95.8%  1, 2, 3            28, 24, 24      16, 12, 13  64.2, 65.4, 51.2%              7.0
    p2   FLUX textured   94.2%   76.7%   100→99.2%  1, 2 (3 ended)     28, 26, 22      16, 19, 17  72.5, 62.1, 54.2%              6.9
    r1   FLUX textured   96.7%   78.3%   100→100%   1, 2 (3: −8.3)     29, 30, 26      17, 19, 18  72.5, 70.4, 76.7%              7.4
    r2   FLUX textured   97.5%   80.0%   100→100%   1, 2 (3: −10.4)    31, 22, 24      19, 18, 20  62.1, 45.8, 40.8%              7.9
    r3   FLUX textured   97.1%   80.4%   100→99.2%  1, 2 (3: −10.4)    28, 29, 27      21, 10, 21  49.2, 69.6, 37.1%              7.5
    r4   FLUX textured   97.5%   84.2%   100→99.2%  1, 2 (3: −11.5)    28, 23, 27      10, 18, 18  48.8, 70.4, 83.8%              7.1
    k2   FLUX dark       98.8%   70.4%   100→95.0%  1, 3 (2: −8.3)     29, 25, 30      22¹, 20, 19 46.2, 70.4%                    6.8
    k3   FLUX dark       100%    88.3%   100→96.7%  1, 2 (3: −15.6)    28, 23, 27      16, 11, 15  46.2, 37.1, 68.3%              7.5
    s3   SD dark         100%    82.5%   100→99.2%  1 (2 gate, 3 adh.) 27, 28, 31      15, 21, 18  50.0, 50.0, 57.1%              9.4
    s4   SD textured     100%    88.3%   100→97.1%  1, 2 (3: adh.)     24, 26, 25      15, 20, 16  46.2, 35.4, 14.2%              23.2 ²
¹ passed the test (p 0.041, one control round in 30 this session, as α 0.05 allows); the gate rejected it at 0.500.
² beside the whole test suite (a fresh-clone CI run).
r2, r3 and r4 met every target, three runs in a row; r1 missed 80% on independent seeds by 1.7 points. The test
passed all of the loop's own rounds with both changes and all but one (¹) of the control's. Every third round with both
changes painted texture over the shapes and was rejected on adherence against the base (the figure in brackets), so
two rounds carry the targets, with little room on independent seeds; p1's promoted third round reached 90.4%.

Rounds 2 and 3 measured against the base win 93.8% and 95.8%, where Bradley–Terry, adding strengths along the
lineage, implies 96.7% and 99.7%: gains do not fully add up round to round, which is why the figure is measured.

Measured on the 2-core machine (one run each; runs of the same settings differ by several points), 96 eval pairs,
the adherence rail sign-tested against parent and base (¹ against the parent alone; ² against the parent, breaking
at any drop past 5 points); same-seed / independent-seed win, flat share and adherence of the final checkpoint, the
rounds promoted, and what stopped the others.

On `models/toy-sd` (the default), β 1000, 300 steps. It samples at 10 DDIM steps, where its base draws 71% flat
backgrounds and every caption right; the rows after the first block sampled at 20 steps (63% flat, twice the time).
Wall times differ by machine: the defaults and the λ 50 rows ran on one that took 17.4, 17.8 and 18.9 min for the
defaults with the control (27.4 min for λ 50 at 20 steps); the rows from λ 100 down on one about twice as fast.

    settings                                same    indep.  flat      adherence    promoted  others
    defaults: lr 3e-4, parent, winner λ 50  100%    90.0%   71→8%     100→99.2%    1, 2, 3   (wins 0.96, 0.93, 0.97)
      its random control                    50.0%   (last trained child 48.8%)          none      wins 0.41, 0.50, 0.46
      again                                 100%    87.9%   71→10%    100→97.5%    1, 2, 3   (wins 0.92, 0.99, 0.87)
      its random control                    50.0%   (last trained child 97.1%)          none      wins 0.56, 0.42, 0.48
      a third time                          100%    87.5%   71→13%    100→99.2%    1, 2, 3   (wins 0.95, 0.94, 0.92)
      its random control                    50.0%   (last trained child 52.1%)          none      wins 0.54, 0.52, 0.58
    at 20 sampling steps:
    lr 3e-4, parent, winner λ 50            99.2%   81.7%   63→16%    100→96.2%    1, 2      3: adherence 98→93%
      its random control                    70.0%   (last trained child 62.1%)          2 ⁵       1, 3: win rate
      the same, without a control           100%    85.0%   63→11%    100→97.1%    1, 2, 3
    lr 3e-4, parent, winner λ 100           99.2%   77.5%   63→18%    100→98.3%    1, 2, 3   (wins 0.91, 0.94, 0.93)
      its random control                    50.0%   (last trained child 30.8%)          none      wins 0.43, 0.46, 0.47
      the same, without a control ⁴         100%    82.1%   63→10%    100→98.3%    1, 2, 3   (wins 0.96, 0.92, 0.92)
    lr 3e-4, parent, winner term λ 200      98.8%   76.7%   63→23%    100→98.8%    1, 2, 3   (wins 0.92, 0.95, 0.86)
      its random control                    50.0%   (last trained child 29.6%)          none      wins 0.50, 0.54, 0.41
      the same, without a control           99.2%   75.0%   63→20%    100→98.8%    1, 2, 3
      the same for 600 steps                97.9%   74.2%   63→19%    100→98.3%    1, 2, 3
    lr 3e-4, parent, winner term λ 500      98.3%   72.5%   63→23%    100→98.8%    1, 2, 3
    lr 1.5e-4, parent, winner term λ 500    99.2%   67.5%   63→28%    100→99.2%    1, 2, 3
    lr 1e-3, parent, winner term λ 500      82.5%   66.2%   63→39%    100→96.7%    1, 2      3: adherence
    lr 1.5e-4, parent                       100%    69.2%   63→36%    100→97.9%    1         2, 3: adherence 98→90, 92%
    lr 1.5e-4, base                         100%    82.5%   63→13%    100→96.7%    2         1: adherence 98→93; 3: win 0.03
      again (stopped in its control)        round 1 promoted; 2 and 3 rejected on win rate (0.07, 0.08)
    lr 1e-4, base                           100%    75.0%   63→25%    100→98.3%    1, 2, 3
    lr 3e-4, base                           50%     —       63%       100%         none      adherence 98→89, 67, 87%

⁴ Shared the 2 cores with the test suite. ⁵ A false promotion: random answers won 63 of 96 eval pairs (lower bound
0.557); the gate's one-sided 2.5% risk a round, three rounds a control. That child drew busier backgrounds, as
random-label children do at λ 50 (one judged 97% by the textured oracle, but rejected by the gate at 0.48).

The SD UNet moves far further per step than the toy FLUX transformer: at lr 3e-4 one round wins 93-98% of its eval
pairs by laying 8-pixel (one latent pixel) noise over background and shapes alike, and loses a third of its captions.
Against the base as reference, a promoted parent's pairs are already won (the DPO margin saturates) and the gradient
comes from the 10% random answers: the next children lose 92-97% of their eval pairs to their parent. Against the
parent, every round starts from a zero margin and wins, but each costs a few points of adherence. The winner term
(RPO's λ, `sft_weight`) holds the shapes: every round promoted at any rate up to 3e-4, adherence within 1.2 points;
what it costs is mode change: at λ 200-500 backgrounds stay 20-28% flat and independent seeds plateau at 67-77%
(β 300 instead of 1000: 97.5% / 69.6%; the base as reference with λ 200: 99.2% / 70.8%). λ 100 lets more backgrounds
go (10-18% flat) and straddles the 80% target (82.1%, 77.5%); λ 50 lets the most go (8-16%) at a cost of up to
3.8 points of adherence. Sampling at 10 steps halves the loop's time and leaves more base backgrounds flat (71%), a
larger share to win back: with it, the defaults met every target in each of three runs.

Session 13, on the same toy FLUX model, the control with each run, one run a line (6.0-8.4 min each on 2 cores);
first the defaults, unchanged, three runs in a row (the control's every child judged, the last one last):

    run                     same    indep.  flat        adherence     promoted  control's children: same / independent
    1                       99.2%   80.8%   52.5→6.7%   100→99.2%     1, 2      61.3, 51.7, 51.2% / 51.7, 51.7, 52.1%
    2                       97.9%   85.4%   52.5→2.5%   100→100%      1, 2      67.1, 55.0, 65.0% / 52.1, 50.4, 55.8%
    3                       96.2%   83.3%   52.5→5.0%   100→99.6%     1, 2, 3   68.3, 63.3, 60.8% / 52.9, 54.2, 55.0%

Every win-rate and adherence target was met in all three (round 3 of runs 1 and 2 rejected on adherence); the
control's (its last child within 50 +/- 10 on the same seeds) in run 1 only. Other settings:

    settings                        same    indep.  flat        adherence     promoted  control's child same / indep.
    batch 8 (`--batch 8`)           97.5%   76.7%   52.5→12.1%  100→99.6%     1, 2      60.8% / 53.3%
    σ mean 1.25                     98.8%   78.3%   52.5→6.2%   100→99.2%     1, 3      71.7% / 55.0%
    σ mean 1.5                      97.5%   91.7%   52.5→2.5%   100→98.8%     1, 2      35.4% / 47.1%
      again                         98.8%   82.9%   52.5→5.4%   100→97.5%     1, 2      38.3% / 46.7%
      a third time                  97.1%   79.2%   52.5→7.9%   100→99.6%     1, 2      66.7% / 53.8%
    winner floor μ 5 (σ mean 1)     68.3%   51.7%   52.5→50.8%  100→100%      1         32.1% / 46.7%
    600 labels (`--labels 600`)     98.3%   87.1%   52.5→1.2%   100→97.5%     1, 2, 3   55.0% / 48.8%
      again                         93.3%   67.1%   52.5→15.8%  100→100%      1, 2      74.2% / 57.5%
    --oracle dark, the defaults     100%    88.8%   52.5→65.4%  100→96.7%     1, 2, 3   62.1, 30.4, 37.1% / 50.8, 46.7, 48.3%

No control round was promoted. σ mean 1.5 averaged 84.6% on independent seeds over three runs (mean 1: 83.3% over
six), within the spread between runs, and the control's last child landed outside 50 +/- 10 on either side (35.4%,
38.3%, 66.7%; 71.7% at 1.25): its drift is of either sign and no setting tried holds it. The 33 random-label children
of this session's eleven runs (three a run, each trained from the base; those of the other settings judged offline)
scored 32.1-85.8% on the same seeds (mean 58.4%, sd 12.6; 11 of 33 within 50 +/- 10) and 46.7-58.3% on independent
seeds (mean 52.1%, sd 3.4; 33 of 33): one run's control meets the same-seed target about one time in three, whatever
the setting.

Two remedies for that drift were measured and dropped. A contrast threshold for the textured annotator (Weber's law
for contrast, as the dark oracle's for luminance), replayed offline on the first σ 1.5 run's images: at 10% (floor:
one 8-bit grey level) the control's child still scores 36.2%, since its background RMS contrast fell by a median 5%
and by more than 27% on a quarter of the seeds, a change a person sees, while the loop's own figures lose 2.5 points
(95.0% / 89.2%). DPO-Positive's winner floor (`--winner-floor`, Pal et al. 2024) stops the learning (round 1 won
0.661 of its eval pairs; the loop's winners are denoised worse than by the reference while the mode moves) and not
the drift (32.1%).

The FLUX defaults since session 12: session 11's (reference parent, 450 steps, lr 3e-3, no winner term) with σ
drawn logit-normal with mean 1 instead of 0 (`--logit-mean`; docs/training.md, *Where the noise levels are drawn*).
Five runs in a row with the control, 7.9-9.7 min each on 2 cores, and one without it:

    run                     same    indep.  flat        adherence     promoted  others                     control's child
    1                       97.5%   86.7%   52.5→2.1%   100→99.2%     1, 2, 3   (wins 0.93, 0.91, 0.93)    50.8% (none promoted)
    2                       91.7%   72.1%   52.5→12.5%  100→100%      1, 2      3: adherence −5.2 vs base  57.5% (none promoted)
    3                       100%    90.8%   52.5→1.7%   100→98.8%     1, 2, 3   (wins 0.89, 0.91, 0.92)    55.8% (none promoted)
    4                       99.6%   86.2%   52.5→3.8%   100→97.5%     1, 2      3: adherence −8.3 vs parent 64.2% (none promoted)
    5                       97.5%   79.2%   52.5→7.1%   100→99.6%     1, 2      3: adherence −5.2 vs parent 52.9% (none promoted)
    without the control     99.2%   85.0%   52.5→4.2%   100→97.5%     1, 2, 3
    --oracle dark           100%    90.4%   52.5→43.8%  100→99.2%     1, 2      3: adherence −16.7         72.1% same-seed, 51.7% indep.

Issue 18's bar is met in runs 1 and 3, not three in a row: run 2's first round won only 0.734 of its eval pairs and
its third lost 5.2 points of adherence against the base; run 5 fell 0.8 points short on independent seeds; in run 4
the control's last child, 12% sharper than the base, scored 64.2%. LoRA targets tried on the way, without the
control unless noted:

    settings                                        same    indep.  flat        adherence     promoted
    attention + feed-forward targets ¹              90.0%   85.0%   52.5→0.4%   100→98.8%     1, 2       3: adherence 96.9→66.7%
    feed-forward targets only ²                     98.3%   79.6%   52.5→3.8%   100→99.2%     1, 2       3: adherence −8.3 vs base
      the same, 600 steps                           95.4%   75.4%   52.5→8.3%   100→98.3%     1, 2       3: adherence −10.4
      the same, λ 5, with the control               95.0%   71.7%   52.5→15.4%  100→100%      1, 2, 3    control's child 57.1%
    attention + feed-forward, λ 2, with the control 95.0%   76.7%   52.5→5.4%   100→98.8%     1, 2       3: adherence; control's child 48.3%

¹ `--targets to_q to_k to_v to_out.0 ff.net.0.proj ff.net.2 proj_mlp proj_out`. ² `--targets ff.net.0.proj ff.net.2
proj_mlp proj_out`.

Session 11's FLUX defaults: reference parent, 450 steps, lr 3e-3, no winner term, on the rebuilt
`models/toy-flux` (docs/training.md, *More steps against the parent*). Four runs in a row with the control, 6.3-6.4
min each on 2 cores, and one without it:

    run                     same    indep.  flat        adherence     promoted  others                     control's child
    1                       95.8%   78.3%   52.5→11.7%  100→99.2%     1, 2      3: adherence −7.3 vs parent  54.2% (none promoted)
    2                       95.8%   76.7%   52.5→5.8%   100→100%      1, 2, 3                              56.7% (none promoted)
    3                       94.6%   77.9%   52.5→9.2%   100→99.2%     1, 2      3: adherence               62.9% (none promoted)
    4                       97.5%   78.8%   52.5→10.4%  100→100%      1, 2      3: adherence               77.9% (none promoted)
    without the control     97.1%   85.8%   52.5→4.6%   100→97.5%     1, 2, 3
    --oracle dark           100%    81.7%   52.5→52.1%  100→98.3%     1, 3      2: adherence               43.8% same-seed, 50.0% indep.

Issue 18's bar (three runs in a row at >= 95% / >= 80%, the control honest) is not met: independent seeds fall 1.2-3.3
points short in each controlled run, and the control's last trained child, whose sharpness drifted −8%, −15%, +3% and
+41% against the base, scored outside 50 +/- 10 twice (on independent seeds: 51.2%, 52.9%, 56.2%, 58.3%). Other settings against the parent, one run each without the control unless noted:

    settings                          same    indep.  flat        adherence     promoted
    300 steps, winner term λ 5        90.8%   68.8%   52.5→17.1%  100→100%      1, 2, 3
    600 steps, lr 2e-3                97.5%   75.8%   52.5→9.2%   100→99.6%     1, 2, 3
    600 steps                         97.5%   71.2%   52.5→20.0%  100→99.6%     1, 2       3: adherence
    600 steps, λ 5                    95.8%   79.6%   52.5→8.8%   100→100%      1, 2, 3
    600 steps, λ 5, lr 4.5e-3         94.2%   74.2%   52.5→10.8%  100→99.6%     1, 2, 3
    900 steps, λ 5                    95.4%   80.4%   52.5→6.7%   100→100%      1, 2, 3
    900 steps, λ 2                    98.3%   80.8%   52.5→7.5%   100→99.2%     1, 2, 3
      again, with the control         90.8%   79.2%   52.5→8.3%   100→100%      1, 2, 3    control's child 70.4%
      a third time, with the control  90.8%   68.3%   52.5→18.8%  100→99.6%     1, 2       3: win 0.53; control's child 76.7%
    1200 steps, λ 5                   94.6%   75.0%   52.5→10.0%  100→99.6%     1, 2, 3

The winner term keeps the shapes (every round promoted in all five λ 5 runs) but no number of steps takes the
independent-seed figure past 80% reliably; runs of one setting spread as widely as settings do.

On the rebuilt `models/toy-flux` (4,200 transformer steps instead of 2,800, over the same VAE: `manage.py
toy_model build --transformer-only`; its base draws 52.5% flat backgrounds and every held-out caption right), one
run each, `--skip-control`, 5.5-8 min alone on 2 cores (docs/training.md, *A better toy FLUX*), with session 10's
defaults (300 steps, base) and the dark oracle's old 0.001 tie margin:

    settings                               same    indep.  flat        adherence     promoted  others
    defaults (β 1000, lr 3e-3, base)       90.4%   68.3%   52.5→26.2%  100→100%      1, 3      2: win 0.60 vs parent
    reference parent                       94.2%   72.5%   52.5→19.6%  100→100%      1, 2      3: adherence −5.2 vs base
    parent, winner term λ 20 ⁷             85.4%   67.9%   52.5→23.8%  100→100%      1, 2, 3   (wins 0.96, 0.81, 0.82)
    --oracle dark, defaults                100%    80.4%   52.5→60.4%  100→99.6%     1, 3      2: adherence −8.3
      its random control                   50.0%   (last trained child 35.4% same-seed, 48.8% independent)  none

⁷ Ran beside another loop on the 2 cores (27 min).

The shapes hold now (every final checkpoint keeps all captions); what falls short is how far three rounds move the
model: 20-26% flat backgrounds remain, and dropping them all would reach 0.525 + 0.475 / 2 = 76% of independent seeds.
The rows below ran on the first toy FLUX model.

On `models/toy-flux` after issue 17 (6 held-out captions: its base draws 36.7% flat backgrounds and gets 92.5% of
their captions right), one run each, 4.5-7.3 min on 2 cores; docs/training.md reads them with the rows below:

    settings                               same    indep.  flat        adherence     promoted  others
    defaults (β 1000, lr 3e-3, base)       87.9%   57.1%   36.7→22.1%  92.5→88.8%    1         2: adherence −9.4; 3: win 0.43
    flow_errors epsilon ((1 − σ)² weights)  50.0%   45.0%   36.7→40.4%  92.5→91.2%    none      adherence −7, −23, −20
    parent, winner term λ 50 (SD recipe)   78.3%   52.5%   36.7→25.4%  92.5→86.7%    2         1, 3: adherence −6.2, −7.3
    parent, winner term λ 200              73.8%   51.2%   36.7→25.4%  92.5→87.5%    1, 2      3: adherence −6.2
    attention + feed-forward targets ⁶     50.0%   45.0%   36.7→40.4%  92.5→91.2%    none      adherence −9, −29, −10
    the same, parent, λ 50                 69.2%   45.8%   36.7→31.2%  92.5→84.2%    2         1, 3: adherence −7.3, −4.2
    --oracle dark, defaults                100%    83.3%   36.7→38.3%  92.5→86.7%    2, 3      1: adherence −12.5
      its random control                   50.0%   (last trained child 34.6% for dark)  none      win rate
      a second control alone               last trained child 8.8% same-seed, 45.0% independent; brightness −2.2, −0.8, +2.6%

⁶ `--targets to_q to_k to_v to_out.0 ff.net.0.proj ff.net.2 proj_mlp proj_out` (the single blocks' MLP and the
output projection too): more capacity, more shapes lost.

Each epsilon round won its eval pairs more (0.96, 0.91, 0.95) and lost more captions; the `dark` taste, global and
low-frequency, is learned across seeds by the same defaults that reach 52-68% for `textured`. The toy FLUX base draws
the world's own mix of backgrounds (36.7% flat; the world paints 35%), the SD base 71%: a child that only drops flat
backgrounds wins 0.367 + 0.633 / 2 = 68% of independent seeds on FLUX, 85.5% on SD, so on FLUX the 80% target asks
for textures stronger than the base's textured ones on most seeds (the strong end of the world's range), which this
toy model draws at the cost of its shapes (docs/training.md).

Before issue 17, on `models/toy-flux` (`--model models/toy-flux`; 3 held-out captions: its base draws 42% flat
backgrounds, 83% of captions right):

    settings                          same   indep.  flat      adherence    promoted  others
    defaults (β 1000, lr 3e-3, base)  94.2%  62.1%   42→16%    83.3→89.6%   1         2, 3: win rate (0.58, 0.57)
      its random control              50.0%  (last trained child 64.6%)     none      win rate
    defaults, again (--screenshots)   90.8%  64.6%   42→16%    83.3→85.4%   1, 3      2: win rate
    defaults, a fourth run            85.8%  68.3%   42→15%    83.3→80.0%   1, 2      3: adherence 84→70% (win 0.82)
    defaults, an earlier run ¹        91.7%  66.7%   42→13%    83.3→85.0%   1, 3      2: adherence 85→73%
      its random control              50.0%  (last trained child 69.2%)     none      win rate
    reference parent ¹                87.9%  56.2%   42→26%    83.3→86.2%   1         2, 3: adherence 90→77, 65%
    β 500 ¹                           88.3%  68.8%   42→10%    83.3→79.2%   1, 2      3: win rate
    β 200 ¹                           91.2%  70.0%   42→5%     83.3→78.8%   1         2, 3: adherence 83→60, 56%
    β 3000                            90.8%  58.3%   42→27%    83.3→89.2%   1         2: adherence 88→81%; 3: win rate
    600 steps, batch 8 ²              86.7%  57.5%   42→21%    83.3→92.1%   1         2: adherence; 3: win rate
    feed-forward LoRA targets too ²   87.1%  69.2%   42→6%     83.3→86.2%   2         1: adherence; 3: win rate
    cosine rate, 20 warm-up steps ²   93.3%  59.6%   42→25%    83.3→85.4%   1, 2, 3
    keep: best (held-out loss) ²      86.7%  54.2%   42→28%    83.3→84.2%   1         2, 3: win rate
    winner term λ 500 ¹               84.2%  55.8%   42→19%    83.3→76.7%   1, 2, 3
    rank 32                           76.2%  55.0%   42→23%    83.3→87.1%   2         1, 3
    lr 1e-3, 900 steps                94.6%  57.5%   42→20%    83.3→83.3%   1, 2, 3   (eval wins 0.88, 0.72, 0.80)
    trained on σ in [0.3, 1] only ³   88.8%  63.3%   42→16%    83.3→83.3%   1, 3      2: adherence 81→77%
    trained on σ in [0, 0.7] only ³   81.7%  55.8%   42→30%    83.3→82.9%   2, 3      1

³ A trial of a noise-range setting, not kept: neither sparing the fine detail nor the layout helped (on the toy SD
model, σ in [0.3, 1] at lr 3e-4 against the base did worse still: adherence 98→54, 65, 39%).

Round 1 (pairs from the base: flat against textured) teaches "fewer flat backgrounds" cleanly. Later rounds see mostly
textured pairs, where the oracle rewards stronger texture; the model learns it everywhere, shapes included, and the
children that win 90-96% of their eval pairs lose 12-27 points of caption adherence and are rejected. The targets
of 95% / 80% sit beyond what this toy model reaches without giving up its shapes. A gentler rate (lr 1e-3 for 900
steps) keeps the shapes and gets every round promoted, but its gains are per-seed (each image a little busier: 94.6%
same-seed) rather than a change of mode (57.5% on independent seeds, 20% flat backgrounds left).

    .venv/bin/python manage.py toy_model build && .venv/bin/python manage.py toy_model build --family sd   # once
    .venv/bin/python bench/loop.py                      # on models/toy-sd, with its toy training defaults
    .venv/bin/python bench/loop.py --model models/toy-flux
    .venv/bin/python bench/loop.py --rounds 1 --labels 100 --skip-control
    .venv/bin/python bench/loop.py --screenshots docs/img       # also the lead's pages, for the README
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, database_recreate, django_env, free_port

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
EVAL_SEEDS = 2_000_000_000  # the bench's held-out seeds: apart from train seeds and the rounds' eval seeds
INDEPENDENT_SEEDS = 3_000_000_000
TASTES = ("textured", "flat", "dark")  # sampler/toy/oracles.py SCORES (bench/sampler.py shadows the package here)


@dataclass
class LoopResult:
    oracle: str
    rounds: list[dict]
    same_seed_win_rate: float
    independent_seed_win_rate: float
    flat_share_base: float
    flat_share_final: float
    adherence_base: float
    adherence_final: float
    # The oracle's same-seed verdict on the loop's last trained child, promoted or not: what the labels
    # did to the model before the promotion gate had its say (the final checkpoint is the last promoted one).
    child_same_seed_win_rate: float | None  # None when no round trained a child
    wall_s: float
    child_independent_seed_win_rate: float | None = None  # the same child on independent seeds
    # The control's every trained child, in round order (each a separate draw of what random labels do)
    children_same_seed_win_rates: list[float] = field(default_factory=list)
    children_independent_seed_win_rates: list[float] = field(default_factory=list)
    # The adapters the carry-over test declined (their rounds kept the parent), as children would have scored
    declined_same_seed_win_rates: list[float] = field(default_factory=list)
    declined_independent_seed_win_rates: list[float] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "toy-sd",
                        help="a toy model folder: models/toy-sd (the default) or models/toy-flux")
    parser.add_argument("--database-url", default="postgres://postgres:postgres@127.0.0.1:5432/chisel_bench_loop")
    parser.add_argument("--oracle", default="textured", choices=TASTES,
                        help="the simulated annotators' taste; it also judges the final checkpoint (and the control's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=300, help="train labels per round (overlap 1)")
    parser.add_argument("--eval-pairs", type=int, default=96, help="child-vs-parent pairs per round")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--ignore-prompt", action="store_true",
                        help="annotators who judge by the taste alone, not first by whether an image shows its caption "
                             "(the bench before session 19)")
    parser.add_argument("--images", type=int, default=120, help="held-out (prompt, seed) pairs in the final comparison")
    parser.add_argument("--train-steps", type=int, default=None, help="default: sampler/toy/defaults.py")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch", type=int, default=None, help="pairs per training step")
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--rank", type=int, default=None)
    parser.add_argument("--reference", choices=("parent", "base"), default=None)
    parser.add_argument("--lr-schedule", choices=("constant", "cosine", "linear"), default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--keep", choices=("last", "best"), default=None, help="which adapter a round keeps")
    parser.add_argument("--carry-over-alpha", type=float, default=None,
                        help="the carry-over test's level (trainer/carry_over.py); 0: no test")
    parser.add_argument("--sft-weight", type=float, default=None, help="λ of the DPO loss's winner term")
    parser.add_argument("--winner-floor", type=float, default=None, help="μ of DPO-Positive's winner floor")
    parser.add_argument("--anchor-weight", type=float, default=None, help="γ of the DPO loss's anchor on both images")
    parser.add_argument("--targets", nargs="+", default=None, help="LoRA target modules (default: the toy's)")
    parser.add_argument("--flow-errors", choices=("velocity", "epsilon"), default=None,
                        help="which errors FLUX's DPO compares (trainer/config.py flow_errors)")
    parser.add_argument("--logit-mean", type=float, default=None,
                        help="FLUX: σ ~ sigmoid(N(mean, 1)); above 0 weighs high noise levels (trainer/config.py)")
    parser.add_argument("--sampling-steps", type=int, default=None, help="default: the toy model's")
    parser.add_argument("--skip-control", action="store_true")
    parser.add_argument("--only-control", action="store_true", help="run the random control alone")
    parser.add_argument("--screenshots", type=Path, help="save the lead's pages (charts, round cockpit) as PNGs here")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    return parser.parse_args()


@contextmanager
def gunicorn(env: dict[str, str]):
    """The web app on a free port (2 workers × 4 threads), stopped on exit; yields its URL."""
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [GUNICORN, "chisel.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread",
         "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # A light page: two cold schema requests racing in one worker (a timed-out try and its retry) trip a
                # thread race in drf-spectacular's extension loading, which logs a traceback.
                httpx.get(f"{url}/admin/login/", timeout=2)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


class Annotators:
    """Simulated annotators of one taste, judging over HTTP in a background thread until stopped."""

    def __init__(self, url: str, taste: str, oracle: str, noise: float, count: int, ignore_prompt: bool) -> None:
        self.args = ["--taste", taste, "--oracle", oracle, "--noise", str(noise), "--annotators", str(count),
                     "--until-idle", "--idle", "2", "--url", url, *(["--ignore-prompt"] if ignore_prompt else [])]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from django.core.management import call_command
        from django.db import connection

        seed = 0
        try:
            while not self.stopped.is_set():
                call_command("simulate_annotators", *self.args, "--seed", str(seed), stdout=io.StringIO())
                seed += 1000
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=60)


def world_create(slug: str, model: Path, heldout: list[str], train: list[str]):
    """A taste on the toy model with its base checkpoint current, and its train and held-out prompts."""
    from annotate import services
    from annotate.demo import toy_base_model
    from annotate.models import Checkpoint, Prompt, Taste

    taste = services.taste_create(slug=slug, name=f"Loop bench ({slug})")
    base = toy_base_model(model)
    root = Checkpoint.objects.create(taste=taste, base_model=base, status=Checkpoint.Status.CURRENT)
    Taste.objects.filter(pk=taste.pk).update(current_checkpoint=root)
    for text in train:
        Prompt.objects.create(text=text, tags=[slug, "train"])
    for text in heldout:
        Prompt.objects.create(text=text, tags=[slug, "heldout"], split=Prompt.Split.HELDOUT)
    return Taste.objects.get(pk=taste.pk)


def round_run(taste, args, number: int, bar) -> dict:
    """Create and start one round on the taste's current checkpoint, then play the beat until it settles."""
    from django.db.models import Q

    from annotate import loop, tasks
    from annotate.models import Judgement, Pair, Prompt, Round
    from sampler.toy.oracles import OFF_PROMPT

    train_ids = list(Prompt.objects.filter(tags__contains=[taste.slug, "train"]).values_list("id", flat=True))
    heldout_ids = list(Prompt.objects.filter(tags__contains=[taste.slug, "heldout"]).values_list("id", flat=True))
    sampling = {"prompt_ids": train_ids, "eval_prompt_ids": heldout_ids, "low_water": args.labels, "batch": 32}
    if args.sampling_steps:
        sampling["steps"] = args.sampling_steps
    training = {**training_settings(args), "seed": number}
    round_ = Round.objects.create(
        taste=taste, number=number, parent_checkpoint=taste.current_checkpoint, pair_quota=args.labels,
        label_quota=args.labels, overlap=1, eval_pair_quota=args.eval_pairs, sampling_config=sampling,
        training_config=training, guard_rails={"adherence": {"max_drop": 0.05}},
    )
    loop.round_start(round_id=round_.pk)
    started = time.monotonic()
    while True:
        tasks.refill_sample_buffers()
        tasks.advance_rounds()
        progress = loop.round_progress(round_id=round_.pk)
        bar.set_postfix_str(
            f"round {number}: {progress['state']}, labels {progress['annotation']['done']}/{progress['annotation']['total']}"
            f", eval {progress['evaluation']['done']}/{progress['evaluation']['total']}"
            f", vs base {progress['base']['done']}/{progress['base']['total']}"
        )
        if progress["state"] in (Round.State.DONE, Round.State.FAILED, Round.State.CANCELLED):
            break
        time.sleep(0.5)
    round_ = Round.objects.get(pk=round_.pk)
    decision = round_.decision or {}
    off_prompt = Q(flags_a__contains=[OFF_PROMPT]) | Q(flags_b__contains=[OFF_PROMPT])
    measured = (decision.get("cumulative") or {}).get("win") or {}
    return {
        # The trainer's carry-over test (trainer/carry_over.py), when it ran: a round that failed it kept the untrained
        # adapter and ended without an evaluation.
        "carry_over": loop.round_carry_over(round_),
        "number": number, "state": round_.state, "error": round_.error, "promoted": decision.get("promote"),
        # No rate where no eval judgement came in (a round the carry-over test ended): no bound either.
        "win_rate": (decision.get("win") or {}).get("rate"),
        "win_low": (decision.get("win") or {}).get("low") if (decision.get("win") or {}).get("n") else None,
        # The child against the base, measured head-to-head (its eval pairs in round 1, child-vs-base pairs after).
        "cumulative": {k: measured[k] for k in ("rate", "low", "high", "n")} if measured.get("n") else None,
        "child": round_.child_checkpoint_id, "seconds": time.monotonic() - started,
        # Train labels where an annotator saw an image that does not show its caption (flagged "doesn't match").
        "off_prompt_labels": Judgement.objects.filter(off_prompt, pair__round=round_, pair__kind=Pair.Kind.TRAIN).count(),
    }


def compare(base_spec, final_spec, prompts: list[str], oracle: str, params, children=(), declined=()) -> dict:
    """The oracle's verdicts of final over base on the same and on independent seeds; flat share, adherence; and
    the verdicts of each of `children` (trained checkpoints, the last one last) and of `declined` (the adapters the
    carry-over test kept out, on their parents) over the base."""
    from sampler.generate import render
    from sampler.loading import pipelines
    from sampler.toy.checkers import adherence, read
    from sampler.toy.oracles import judge

    def images(spec, seeds):
        out = []
        for start in range(0, len(prompts), 40):
            out += render(pipelines.get(spec), prompts=prompts[start:start + 40], seeds=seeds[start:start + 40],
                          params=params)
        return out

    same = [EVAL_SEEDS + i for i in range(len(prompts))]
    base, final = images(base_spec, same), images(final_spec, same)
    independent = images(final_spec, [INDEPENDENT_SEEDS + i for i in range(len(prompts))])
    rng = random.Random(0)

    def win_rate(lefts, rights) -> float:
        verdicts = [judge(oracle, left, right, rng=rng) for left, right in zip(lefts, rights)]
        return (verdicts.count("left") + verdicts.count("tie") / 2) / len(verdicts)

    def flat(batch):
        return sum(read(image).background == "flat" for image in batch) / len(batch)

    def adherent(batch):  # batches hold one image per prompt, or two (same and independent seeds)
        return sum(adherence(image, prompt) for image, prompt in zip(batch, prompts * 2, strict=False)) / len(batch)

    same_seed, independent_seed = win_rate(final, base), win_rate(independent, base)
    independent_seeds = [INDEPENDENT_SEEDS + i for i in range(len(prompts))]
    children_same = [win_rate(images(spec, same), base) for spec in children]
    children_independent = [win_rate(images(spec, independent_seeds), base) for spec in children]
    return {
        "same_seed_win_rate": same_seed, "independent_seed_win_rate": independent_seed,
        "child_same_seed_win_rate": children_same[-1] if children else same_seed,
        "child_independent_seed_win_rate": children_independent[-1] if children else independent_seed,
        "children_same_seed_win_rates": children_same, "children_independent_seed_win_rates": children_independent,
        "declined_same_seed_win_rates": [win_rate(images(spec, same), base) for spec in declined],
        "declined_independent_seed_win_rates": [win_rate(images(spec, independent_seeds), base) for spec in declined],
        "flat_share_base": flat(base), "flat_share_final": flat(final + independent),
        "adherence_base": adherent(base), "adherence_final": adherent(final + independent),
    }


def loop_run(url: str, args, oracle: str, noise: float) -> LoopResult:
    from tqdm import tqdm

    from annotate.models import Checkpoint, Taste
    from annotate.sampling import checkpoint_spec, round_sample_params
    from sampler.toy import defaults

    started = time.monotonic()
    train, heldout = defaults.split_captions()
    taste = world_create(f"loop-{oracle}", args.model, heldout, train)
    results = []
    with Annotators(url, taste.slug, oracle, noise, args.annotators, args.ignore_prompt):
        bar = tqdm(range(1, args.rounds + 1), desc=f"{oracle} loop", unit="round")
        for number in bar:
            results.append(round_run(Taste.objects.get(pk=taste.pk), args, number, bar))
            if results[-1]["state"] != "done":
                break
    taste = Taste.objects.select_related("current_checkpoint__base_model").get(pk=taste.pk)
    root = Checkpoint.objects.filter(taste=taste, parent=None).select_related("base_model").get()
    final = taste.current_checkpoint
    last_child = next((r["child"] for r in reversed(results) if r["child"]), None)
    from annotate.models import Round

    params = round_sample_params(Round.objects.filter(taste=taste).first())
    prompts = [heldout[i % len(heldout)] for i in range(args.images)]
    if oracle == "random":  # every random-label child: one alone says little (docs/training.md, *Session 13*)
        children = [r["child"] for r in results if r["child"]]
    else:  # the last trained child, where the gate kept it out of the final checkpoint
        children = [last_child] if last_child is not None and last_child != final.pk else []
    children = [checkpoint_spec(Checkpoint.objects.get(pk=pk)) for pk in children]
    declined = [declined_spec(Checkpoint.objects.get(pk=r["child"])) for r in results
                if r["child"] and r.get("carry_over") and not r["carry_over"]["carried"]]
    figures = compare(checkpoint_spec(root), checkpoint_spec(final), prompts, args.oracle, params, children=children,
                      declined=[spec for spec in declined if spec is not None])
    if last_child is None:  # no round trained a child: nothing to score (the base against itself is 50%)
        figures["child_same_seed_win_rate"] = figures["child_independent_seed_win_rate"] = None
    cumulative_against_base(taste, results)
    return LoopResult(oracle=oracle, rounds=results, wall_s=time.monotonic() - started, **figures)


def declined_spec(child):
    """The adapter the carry-over test declined in the child's round, on the child's parent (None: the run left none)."""
    from annotate.sampling import checkpoint_spec
    from sampler.spec import ModelSpec
    from trainer.carry_over import DECLINED_FOLDER

    folder = Path(child.lora_path).parent / DECLINED_FOLDER
    if not folder.is_dir():
        return None
    parent = checkpoint_spec(child.parent)
    return ModelSpec(parent.base_path, (*parent.lora_paths, str(folder)))


def cumulative_against_base(taste, results: list[dict]) -> None:
    """Each round's child against the base as Bradley–Terry implies it, fitted to all the taste's eval and
    child-vs-base judgements (what the charts page shows beside the measured figure), with the 95% interval."""
    from annotate.dashboard import checkpoint_strengths, lineage

    strengths = {row["id"]: row for row in checkpoint_strengths(taste=taste, checkpoints=lineage(taste=taste))}
    for result in results:
        row = strengths.get(result["child"])
        result["vs_base"] = row and {"rate": row["vs_base"], "low": row["vs_base_low"], "high": row["vs_base_high"]}


def main() -> None:
    args = parse_args()
    if not (args.model / "model_index.json").is_file():
        sys.exit(f"{args.model} is not a diffusers model folder: build it with `manage.py toy_model build` "
                 "(models/toy-flux), then `manage.py toy_model build --family sd` (models/toy-sd).")
    files = tempfile.mkdtemp(prefix="chisel-loop-")
    database_recreate(args.database_url)
    env = {**django_env(args.database_url, files), "CHISEL_CHECKPOINT_ROOT": str(Path(files, "checkpoints")),
           "CELERY_TASK_ALWAYS_EAGER": "true"}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import torch
    from django.core.management import call_command

    torch.set_num_threads(2)
    call_command("migrate", verbosity=0)
    if args.screenshots:
        call_command("collectstatic", "--noinput", verbosity=0)  # the admin's own CSS, served by whitenoise
    started = time.monotonic()
    with gunicorn(env) as url:
        loops = [] if args.only_control else [loop_run(url, args, args.oracle, args.noise)]
        if not args.skip_control:
            loops.append(loop_run(url, args, "random", 0.0))
        wall = time.monotonic() - started
        if args.screenshots:
            try:
                screenshots(url, args.screenshots, args.chromium, f"loop-{args.oracle}")
            except Exception as exc:  # the figures matter more than the pictures: report them whatever happens
                print(f"No screenshots: {exc}", file=sys.stderr)
    report(args, loops, wall)


def screenshots(url: str, out: Path, chromium: str, slug: str) -> None:
    """The oracle's taste's charts page and its last round's cockpit, as a lead sees them, saved as PNGs."""
    import secrets

    from playwright.sync_api import sync_playwright

    from annotate import services
    from annotate.models import Round, Taste

    password = secrets.token_urlsafe(12)
    services.lead_create(username="bench-lead", password=password)
    taste = Taste.objects.get(slug=slug)
    last = Round.objects.filter(taste=taste).order_by("-number").first()
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=url)
        page.goto("/admin/login/")
        page.fill("input[name=username]", "bench-lead")
        page.fill("input[name=password]", password)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        page.goto(f"/admin/annotate/taste/{taste.pk}/charts/")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "taste-charts.png"), full_page=True)
        page.goto(f"/admin/annotate/round/{last.pk}/change/")
        page.screenshot(path=str(out / "round-cockpit.png"), full_page=True)
        browser.close()
    print(f"Screenshots in {out}: taste-charts.png, round-cockpit.png")


def training_settings(args) -> dict:
    """The toy defaults of the model's family, with what the command line overrides."""
    from sampler.loading import model_kind
    from sampler.toy import defaults

    chosen = {"steps": args.train_steps, "batch_size": args.batch, "learning_rate": args.lr, "beta": args.beta,
              "rank": args.rank, "reference": args.reference, "target_modules": args.targets,
              "sft_weight": args.sft_weight, "winner_floor": args.winner_floor, "anchor_weight": args.anchor_weight,
              "keep": args.keep,
              "lr_schedule": args.lr_schedule, "warmup_steps": args.warmup, "flow_errors": args.flow_errors,
              "logit_mean": args.logit_mean, "carry_over_alpha": args.carry_over_alpha}
    settings = {**defaults.TRAINING[model_kind(args.model)], **{k: v for k, v in chosen.items() if v is not None}}
    if settings.get("carry_over_alpha") == 0:
        settings["carry_over_alpha"] = None
    return settings


def points(share: float) -> float:
    """A share in percentage points, rounded past float noise: 1.0 − 0.95 is 5 points, not 5.000000000000004."""
    return round(100 * share, 6)


def child_score(result: LoopResult, independent: bool = False) -> str:
    score = result.child_independent_seed_win_rate if independent else result.child_same_seed_win_rate
    return "—" if score is None else f"{score:.1%}"


def rates(figures: list[float]) -> str:
    return f"{', '.join(f'{f:.1%}' for f in figures)} (mean {sum(figures) / len(figures):.1%})"


def report(args, loops: list[LoopResult], wall: float) -> None:
    print()
    print(f"{'loop':<10} {'round':>5} {'state':<10} {'promoted':>8} {'eval win':>9} {'low':>6} "
          f"{'vs base measured (95%)':>27} {'vs base BT (95%)':>27} {'held-out (p)':>16} {'seconds':>8}")

    def interval(figure) -> str:
        return f"{figure['rate']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]" if figure else ""

    def held_out(test) -> str:  # the carry-over test: right / held-out pairs, its p-value, and a ✘ where it failed
        return f"{test['correct']}/{test['pairs']} ({test['p_value']:.3f}){'' if test['carried'] else ' ✘'}" if test else ""

    for result in loops:
        for r in result.rounds:
            rate = "" if r["win_rate"] is None else f"{r['win_rate']:.3f}"
            low = "" if r["win_low"] is None else f"{r['win_low']:.3f}"
            print(f"{result.oracle:<10} {r['number']:>5} {r['state']:<10} {str(r['promoted']):>8} {rate:>9} {low:>6} "
                  f"{interval(r.get('cumulative')):>27} {interval(r.get('vs_base')):>27} {held_out(r.get('carry_over')):>16}"
                  f" {r['seconds']:>8.0f}")
    print()
    print(f"{'loop':<10} {'same-seed':>9} {'indep.':>7} {'flat base':>9} {'flat final':>10} {'adh. base':>9} "
          f"{'adh. final':>10} {'child same-seed':>15} {'wall s':>7}")
    for r in loops:
        print(f"{r.oracle:<10} {r.same_seed_win_rate:>9.1%} {r.independent_seed_win_rate:>7.1%} "
              f"{r.flat_share_base:>9.1%} {r.flat_share_final:>10.1%} {r.adherence_base:>9.1%} "
              f"{r.adherence_final:>10.1%} {child_score(r):>15} {r.wall_s:>7.0f}")
    main_loop = next((r for r in loops if r.oracle != "random"), None)
    control = next((r for r in loops if r.oracle == "random"), None)
    figures = {name: getattr(main_loop, name, None) for name in (
        "same_seed_win_rate", "independent_seed_win_rate", "flat_share_base", "flat_share_final", "adherence_base",
        "adherence_final")}
    control_promoted = [bool(r["promoted"]) for r in control.rounds] if control else []
    summary = {
        **figures, "control_same_seed_win_rate": control.same_seed_win_rate if control else None,
        # The control's figures: how often the gate let a random-label child through, and what the oracle makes
        # of the last child the random labels trained (promoted or not), which should stay near 50%.
        "control_promoted_share": sum(control_promoted) / len(control_promoted) if control_promoted else None,
        "control_child_same_seed_win_rate": control.child_same_seed_win_rate if control else None,
        # On independent seeds: for a continuous oracle (dark) the same-seed figure magnifies a drift of 1%.
        "control_child_independent_seed_win_rate": control.child_independent_seed_win_rate if control else None,
        # Every child the control trained, in round order: its last one's same-seed figure is one draw of a wide spread.
        "control_children_same_seed_win_rates": control.children_same_seed_win_rates if control else None,
        "control_children_independent_seed_win_rates": control.children_independent_seed_win_rates if control else None,
        # The control's adapters the carry-over test declined, scored as if kept: the drift the test stops.
        "control_declined_same_seed_win_rates": control.declined_same_seed_win_rates if control else None,
        "control_declined_independent_seed_win_rates": control.declined_independent_seed_win_rates if control else None,
        # Each round's child against the base, measured head-to-head (decision["cumulative"]), and as implied by
        # Bradley–Terry strengths over every eval and child-vs-base judgement of the taste.
        "cumulative_vs_base": [r.get("cumulative") for r in main_loop.rounds] if main_loop else None,
        "control_cumulative_vs_base": [r.get("cumulative") for r in control.rounds] if control else None,
        "cumulative_vs_base_bt": [r.get("vs_base") for r in main_loop.rounds] if main_loop else None,
        "control_cumulative_vs_base_bt": [r.get("vs_base") for r in control.rounds] if control else None,
        # Each round's carry-over test (null where the config runs none): a failed one kept the parent.
        "carry_over": [r.get("carry_over") for r in main_loop.rounds] if main_loop else None,
        "control_carry_over": [r.get("carry_over") for r in control.rounds] if control else None,
        # Each round's train labels where an annotator flagged an image "doesn't match the prompt".
        "off_prompt_labels": [r.get("off_prompt_labels") for r in main_loop.rounds] if main_loop else None,
        "wall_s": wall, "model": args.model.name, "rounds": args.rounds, "labels": args.labels, "noise": args.noise,
        "annotators_mind_prompt": not args.ignore_prompt,
        "training": {k: v for k, v in training_settings(args).items() if k != "seed"},
        "promoted": [r["promoted"] for r in main_loop.rounds] if main_loop else None,
        "control_promoted": [r["promoted"] for r in control.rounds] if control else None,
    }
    ran = main_loop is not None
    targets = [
        ("same-seed win >= 95%", ran and points(main_loop.same_seed_win_rate) >= 95),
        ("independent-seed win >= 80%", ran and points(main_loop.independent_seed_win_rate) >= 80),
        ("control's last trained child within 50 +/- 10%", control is not None
         and control.child_same_seed_win_rate is not None and abs(points(control.child_same_seed_win_rate) - 50) <= 10),
        ("adherence drop <= 5 points", ran and points(main_loop.adherence_base - main_loop.adherence_final) <= 5),
        ("under 20 minutes", wall <= 20 * 60),
    ]
    if control is not None:
        print(f"\ncontrol: {sum(control_promoted)} of {len(control_promoted)} rounds promoted "
              f"(the gate's one-sided risk is 2.5% a round; docs/evaluation.md); the {args.oracle} oracle's same-seed "
              f"score of its last trained child: {child_score(control)} (target 50 +/- 10%); on independent seeds: "
              f"{child_score(control, independent=True)}")
        if control.children_same_seed_win_rates:
            print(f"every child the control trained, same seeds: {rates(control.children_same_seed_win_rates)}; "
                  f"independent seeds: {rates(control.children_independent_seed_win_rates)}")
        tests = [r["carry_over"] for r in control.rounds if r.get("carry_over")]
        if tests:
            print(f"the trainer's carry-over test kept {sum(t['carried'] for t in tests)} of {len(tests)} control "
                  f"adapters (α {tests[0]['alpha']:g}); a control round that failed it trained an adapter and kept the "
                  "parent, so its child scores 50% by construction")
        if control.declined_same_seed_win_rates:
            print(f"the adapters it declined, had they been kept, same seeds: "
                  f"{rates(control.declined_same_seed_win_rates)}; independent seeds: "
                  f"{rates(control.declined_independent_seed_win_rates)}")
    print()
    for name, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
