#!/usr/bin/env node
/**
 * The `longlora` command line: a thin layer over the library.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LongLoraError } from '../errors.js';
import { closestNames, editDistance } from '../util/text.js';
import { UsageError } from './args.js';
import { deviceAlias } from './device-alias.js';
import { demo } from './commands/demo.js';
import { info } from './commands/info.js';
import { backendsCommand } from './commands/backends.js';
import { train } from './commands/train.js';
import { pretrainCommand } from './commands/pretrain.js';
import { merge } from './commands/merge.js';
import { exportCommand } from './commands/export.js';
import { pushCommand } from './commands/push.js';
import { tokenizeCommand } from './commands/tokenize.js';
import { evaluate } from './commands/eval.js';
import { generateCommand } from './commands/generate.js';
import { chatCommand } from './commands/chat.js';
import { flopsCommand } from './commands/flops.js';

interface Command {
  summary: string;
  run: (argv: string[]) => Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  demo: { summary: 'load the bundled tiny Llama, check it against PyTorch, and fit one batch', run: demo },
  train: { summary: 'fine-tune a model to a longer context (LongLoRA, LoRA or full)', run: train },
  pretrain: { summary: 'train a small Llama from random initialisation (dense attention, short context)', run: pretrainCommand },
  merge: { summary: 'merge an adapter into its base model (a standalone HF checkpoint)', run: merge },
  export: { summary: 'write a model folder as one GGUF file for llama.cpp and ollama, or a GGUF file as a folder', run: exportCommand },
  push: { summary: 'upload an adapter, a model folder or a GGUF file to the Hugging Face Hub (with a model card)', run: pushCommand },
  tokenize: { summary: 'tokenize text corpora or SFT records into a cached token file', run: tokenizeCommand },
  eval: { summary: 'evaluate: perplexity (eval ppl) or passkey retrieval (eval passkey)', run: evaluate },
  generate: { summary: 'generate text from a prompt, streamed (KV cache)', run: generateCommand },
  chat: { summary: 'chat with a model through its chat template (multi-turn, streamed)', run: chatCommand },
  flops: { summary: 'FLOPs per component and attention share, dense vs S²-Attn; activation memory', run: flopsCommand },
  info: { summary: 'describe a model folder, a .safetensors or .gguf file, or a training run', run: info },
  backends: { summary: 'the compute backends on this machine, what each runs on, and which auto picks', run: backendsCommand },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const lines = Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`);
  return ['usage: longlora <command> [options]', '', 'commands:', ...lines, '', 'Run `longlora <command> --help` for the options of a command.', '`--device webgpu|wasm|cpu|auto` is another name for `--backend` in every command that has it.'].join('\n');
}

/** The package's version (package.json two folders above the compiled CLI, or above the source). */
function version(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const file = path.join(here, up, 'package.json');
    if (fs.existsSync(file)) return String((JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: unknown }).version);
  }
  return 'unknown';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    console.log(usage());
    return 0;
  }
  if (name === '--version' || name === '-v') {
    console.log(`longlora ${version()}`);
    return 0;
  }
  if (name === 'help') return main([rest[0]!, '--help']); // `longlora help generate`
  const cmd = COMMANDS[name];
  if (!cmd) {
    const near = closestNames(name, Object.keys(COMMANDS), 1)[0];
    const hint = near !== undefined && editDistance(name, near) <= 2 ? ` Did you mean '${near}'?` : '';
    console.error(`longlora: unknown command '${name}'.${hint}\n\n${usage()}`);
    return 2;
  }
  await cmd.run(deviceAlias(rest));
  return 0;
}

// Output piped into a program that stops reading (`| head`): stop quietly, as other tools do.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => { if (!process.exitCode) process.exitCode = code; }, // a command may have set its own (130: interrupted)
  (err: unknown) => {
    if (err instanceof LongLoraError) console.error(`longlora: error: ${err.message}`);
    else console.error(err);
    process.exitCode = err instanceof LongLoraError && !(err instanceof UsageError) ? 1 : 2;
  },
);
