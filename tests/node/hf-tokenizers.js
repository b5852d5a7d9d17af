// Builds, with Hugging Face's own tokenizers library, a tokenizer.json of each family's kind, trained on the corpus
// given, and writes for each the ids the library gives a text, with and without the special tokens its post-processor
// adds. Usage: node hf-tokenizers.js CORPUS.txt TEXT.txt OUT_DIR. Each family's files go to OUT_DIR/FAMILY/ and
// OUT_DIR/expected.json maps FAMILY to { plain: [...], special: [...] }.
const fs = require('fs');
const path = require('path');
const t = require('tokenizers');

const [corpus, textFile, out] = process.argv.slice(2);
const text = fs.readFileSync(textFile, 'utf8');

// The pre-tokenization patterns of the families (the regexes their tokenizer.json files carry).
const llama3Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const qwen2Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function sentencePieceDecoder() {
  return {
    type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 },
    ],
  };
}

function byteLevelDecoder() {
  return { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
}

// Trains a BPE with the given pipeline; edit(json) may then change the saved file (a step the Node binding cannot
// build, such as the ByteLevel decoder), and the library reads the file back to encode.
function build(name, setup, specials, template, edit, tokenizerConfig) {
  const dir = path.join(out, name);
  fs.mkdirSync(dir, { recursive: true });
  const tok = new t.Tokenizer(t.BPE.empty());
  setup(tok);
  tok.train([corpus]);
  tok.addSpecialTokens(specials);
  if (template) {
    const ids = template.tokens.map(s => [s, tok.tokenToId(s)]);
    tok.setPostProcessor(t.templateProcessing(template.single, template.pair, ids));
  }
  const file = path.join(dir, 'tokenizer.json');
  tok.save(file);
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (edit) edit(json);
  renumber(json);
  fs.writeFileSync(file, JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  return t.Tokenizer.fromFile(file);
}

// Hugging Face's loader takes the model's ids to run 0..n-1 and gives the added tokens the ids after them, whatever
// the file says; so once symbols are added to a trained vocabulary, the ids are renumbered that way (the model's by
// their order, then the added tokens, with the post-processor's note of their ids), as real tokenizer files have them.
function renumber(json) {
  const entries = Object.entries(json.model.vocab).sort((a, b) => a[1] - b[1]);
  const vocab = {};
  entries.forEach(([token], i) => { vocab[token] = i; });
  json.model.vocab = vocab;
  const moved = {};
  let next = entries.length;
  for (const added of json.added_tokens) {
    const id = added.content in vocab ? vocab[added.content] : next++;
    moved[added.id] = id;
    added.id = id;
  }
  const processors = !json.post_processor ? [] : json.post_processor.type === 'Sequence' ? json.post_processor.processors : [json.post_processor];
  for (const processor of processors)
    for (const special of Object.values(processor.special_tokens || {}))
      special.ids = special.ids.map(i => (i in moved ? moved[i] : i));
}

function withByteAlphabet(json) {
  // A byte-level BPE's vocabulary holds all 256 byte symbols (the trainer's initial alphabet), so that no byte is lost.
  const vocab = json.model.vocab;
  let next = Math.max(...Object.values(vocab), ...json.added_tokens.map(a => a.id)) + 1;
  for (const symbol of t.byteLevelAlphabet()) if (!(symbol in vocab)) vocab[symbol] = next++;
}

function withByteFallback(json) {
  // SentencePiece-style BPE (Llama 2, Mistral): bytes of characters outside the vocabulary become <0xNN> tokens.
  const vocab = json.model.vocab;
  let next = Math.max(...Object.values(vocab), ...json.added_tokens.map(a => a.id)) + 1;
  for (let b = 0; b < 256; b++) {
    const token = '<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>';
    if (!(token in vocab)) vocab[token] = next++;
  }
  json.model.byte_fallback = true;
  json.model.unk_token = null;
}

const families = {
  llama3: () => build('llama3', tok => {
    tok.setPreTokenizer(t.sequencePreTokenizer([
      t.splitPreTokenizer(llama3Pattern, 'isolated', false),
      t.byteLevelPreTokenizer(false, false),
    ]));
  }, ['<|begin_of_text|>', '<|end_of_text|>'],
  { single: '<|begin_of_text|> $A', pair: '<|begin_of_text|> $A <|begin_of_text|> $B', tokens: ['<|begin_of_text|>'] },
  json => { withByteAlphabet(json); json.decoder = byteLevelDecoder(); },
  { eos_token: '<|end_of_text|>', bos_token: '<|begin_of_text|>' }),

  qwen2: () => build('qwen2', tok => {
    tok.setNormalizer(t.nfcNormalizer());
    tok.setPreTokenizer(t.sequencePreTokenizer([
      t.splitPreTokenizer(qwen2Pattern, 'isolated', false),
      t.byteLevelPreTokenizer(false, false),
    ]));
  }, ['<|endoftext|>', '<|im_start|>', '<|im_end|>'], null,
  json => { withByteAlphabet(json); json.decoder = byteLevelDecoder(); },
  { eos_token: '<|endoftext|>' }),

  // Mistral's newer files: a Metaspace pre-tokenizer that prepends ▁ to the first word.
  mistral: () => build('mistral', tok => {
    tok.setPreTokenizer(t.metaspacePreTokenizer('▁', 'first', true));
  }, ['<unk>', '<s>', '</s>'],
  { single: '<s> $A', pair: '<s> $A <s> $B', tokens: ['<s>'] },
  json => { withByteFallback(json); json.decoder = sentencePieceDecoder(); },
  { eos_token: '</s>', bos_token: '<s>' }),

  // Llama 2's files: no pre-tokenizer; a normalizer prepends ▁ and replaces spaces by it.
  llama2: () => build('llama2', tok => {
    tok.setNormalizer(t.sequenceNormalizer([t.prependNormalizer('▁'), t.replace(' ', '▁')]));
  }, ['<unk>', '<s>', '</s>'],
  { single: '<s> $A', pair: '<s> $A <s> $B', tokens: ['<s>'] },
  json => { withByteFallback(json); json.decoder = sentencePieceDecoder(); },
  { eos_token: { content: '</s>' }, bos_token: '<s>' }),

  // A byte-level BPE whose pre-tokenizer splits digits one by one (as several code models do).
  digits: () => build('digits', tok => {
    tok.setPreTokenizer(t.sequencePreTokenizer([t.digitsPreTokenizer(true), t.byteLevelPreTokenizer(true, true)]));
  }, ['<|endoftext|>'], null,
  json => { withByteAlphabet(json); json.decoder = byteLevelDecoder(); },
  { eos_token: '<|endoftext|>' }),
};

(async () => {
  const expected = {};
  for (const [name, make] of Object.entries(families)) {
    const tok = make();
    const plain = await tok.encode(text, null, { addSpecialTokens: false });
    const special = await tok.encode(text);
    expected[name] = { plain: plain.getIds(), special: special.getIds(), decoded: await tok.decode(plain.getIds(), false) };
  }
  fs.writeFileSync(path.join(out, 'expected.json'), JSON.stringify(expected));
})().catch(e => { console.error(e); process.exit(1); });
