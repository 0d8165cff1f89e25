/**
 * `longlora train`: fine-tune a base model to a longer context. Options come from the
 * defaults, then `--preset NAME`, then `--config file.yaml|json`, then flags (`--seq-len 8192`, ...). Ctrl-C
 * stops after the current step and saves a checkpoint; `--resume` continues.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseStrict } from '../args.js';
import { LongLoraError } from '../../errors.js';
import { applyValues, defaultTrainConfig, nullLabel, readConfigFile, trainFlags, type TrainConfig } from '../../train/config.js';
import { Trainer } from '../../train/trainer.js';
import { applyPreset, presetNames } from '../../train/presets.js';

const USAGE = 'longlora train --model DIR|org/name --data TOKENS.bin|TEXT|SFT.jsonl [--preset NAME] [--config FILE] [options]';

function help(): string {
  const rows = trainFlags().map(({ key, flag, field }) => {
    const name = field.kind === 'bool' ? `--${flag}, --no-${flag}` : `--${flag} <${field.kind === 'enum' ? field.values!.join('|') : field.kind}>`;
    const d = field.default === null ? nullLabel(key) : Array.isArray(field.default) ? field.default.join(',') : String(field.default);
    // the help of some fields says its default itself; the model and the data have none
    const suffix = key === 'model' || key === 'data' ? ' (required)' : /\(default/.test(field.help) ? '' : ` (default: ${d})`;
    return `  ${name.padEnd(40)} ${field.help}${suffix}`;
  });
  return [
    `usage: ${USAGE}`, '',
    'run options:',
    `  --preset <name>                          shipped option set, applied before --config and flags (${presetNames().join(', ') || 'none'})`,
    '  --config <file>                          JSON or YAML file of options (flags override it)',
    '  --resume                                 continue from the latest checkpoint in --output, with the run\'s own options (train_config.json)',
    '  --resume-from <dir>                      continue from this checkpoint folder',
    '  --dry-run                                check the config, model and data, then stop (writes nothing)',
    '  --device <name>                          another name for --backend',
    '', 'training options:', ...rows,
    '  -h, --help                               show this help',
  ].join('\n');
}

/** Parses argv into a resolved config and run flags. */
export function parseTrainArgs(argv: string[]): { config: TrainConfig; resume: string | boolean; dryRun: boolean } | null {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    config: { type: 'string' }, preset: { type: 'string' }, resume: { type: 'boolean' }, 'resume-from': { type: 'string' },
    'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  };
  for (const { flag, field } of trainFlags()) {
    if (field.kind === 'bool') { options[flag] = { type: 'boolean' }; options[`no-${flag}`] = { type: 'boolean' }; } else options[flag] = { type: 'string' };
  }
  const { values } = parseStrict(argv, options, 'longlora train');
  if (values.help) { console.log(help()); return null; }
  const flags: Record<string, unknown> = {};
  for (const { key, flag, field } of trainFlags()) {
    if (field.kind === 'bool') {
      if (values[flag] && values[`no-${flag}`]) throw new LongLoraError(`--${flag} and --no-${flag} contradict each other`);
      if (values[flag]) flags[key] = true;
      if (values[`no-${flag}`]) flags[key] = false;
    } else if (values[flag] !== undefined) flags[key] = values[flag];
  }
  // defaults, then --preset, then --config, then flags
  const layered = (base: TrainConfig): TrainConfig => {
    let c = base;
    if (typeof values.preset === 'string') c = applyPreset(c, values.preset);
    if (typeof values.config === 'string') c = applyValues(c, readConfigFile(values.config), values.config);
    return applyValues(c, flags, 'command line');
  };
  let config = layered(defaultTrainConfig());
  const resume = typeof values['resume-from'] === 'string' ? values['resume-from'] : values.resume === true;
  // A resumed run starts from the options it was started with (its train_config.json), so
  // `--output DIR --resume` alone continues it; what is given again overrides them.
  const saved = path.join(typeof resume === 'string' ? path.dirname(path.resolve(resume)) : config.output, 'train_config.json');
  if (resume && fs.existsSync(saved)) config = layered(applyValues(defaultTrainConfig(), readConfigFile(saved), saved));
  return { config, resume, dryRun: values['dry-run'] === true };
}

export async function train(argv: string[]): Promise<void> {
  const parsed = parseTrainArgs(argv);
  if (!parsed) return;
  const trainer = await Trainer.create(parsed.config, { resume: parsed.resume, dryRun: parsed.dryRun });
  if (parsed.dryRun) {
    process.stderr.write('dry run: config, model and data are fine; not training (nothing was written to --output).\n');
    trainer.dispose();
    return;
  }
  let interrupts = 0;
  const onSigint = (): void => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write(`\n${trainer.requestStop()} (Ctrl-C again to quit at once)\n`);
    } else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  try {
    const r = await trainer.run();
    process.stderr.write(r.stopped ? `stopped at step ${r.steps}\n` : `done: ${r.steps} steps, last loss ${r.lastLoss?.toFixed(4)}\n`);
    if (r.stopped) process.exitCode = 130; // interrupted (as a shell reports Ctrl-C), not finished
  } finally {
    process.off('SIGINT', onSigint);
    trainer.dispose();
  }
}
