/** `longlora push`: an adapter (a training run's folder), a model folder or a GGUF file → a Hugging Face Hub repository. */
import { LongLoraError } from '../../errors.js';
import { pushToHub } from '../../io/hub-upload.js';
import { parse } from '../args.js';

const OPTIONS = {
  repo: { type: 'string', help: 'the repository, user/name or org/name (created when it does not exist)' },
  private: { type: 'boolean', help: 'create the repository private' },
  revision: { type: 'string', help: 'branch to commit to (default main)' },
  message: { type: 'string', help: 'commit title' },
} as const;

export async function pushCommand(argv: string[]): Promise<void> {
  const args = parse(argv, 'longlora push DIR|FILE.gguf --repo user/name [--private] [--revision BRANCH] [--message TEXT]\n\n' +
    'DIR is a training run\'s folder (its adapter, longlora.json, ppl.json and model card go; checkpoints do not) or a model\n' +
    'folder such as a merged model (all of it); a .gguf file goes with the Modelfile beside it and a model card.\n' +
    'The token is HF_TOKEN, else the one `huggingface-cli login` saved.', OPTIONS, true);
  if (!args) return;
  const v = args.values;
  if (args.positionals.length !== 1) throw new LongLoraError(`push: give one folder or .gguf file to push, got ${args.positionals.length}`);
  if (typeof v.repo !== 'string') throw new LongLoraError('push: --repo user/name is required');
  const r = await pushToHub(args.positionals[0]!, {
    repo: v.repo,
    ...(v.private === true ? { private: true } : {}),
    ...(typeof v.revision === 'string' ? { revision: v.revision } : {}),
    ...(typeof v.message === 'string' ? { message: v.message } : {}),
  });
  console.log(`pushed the ${r.kind} (${r.files.length} files, ${(r.bytes / 1e6).toFixed(1)} MB) to ${r.url}${r.commit ? ` (commit ${r.commit.slice(0, 8)})` : ''}`);
}
