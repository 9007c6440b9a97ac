// Every v1 command, in help order (plus `config`).
import { configCommand } from "./config.ts";
import { doctorCommand } from "./doctor.ts";
import { initCommand } from "./init.ts";
import { statusCommand } from "./status.ts";
import { logsCommand } from "./logs.ts";
import { registerCommand } from "./register.ts";
import { deployCommand } from "./deploy.ts";
import { generateCommand } from "./generate.ts";
import { listCommand } from "./list.ts";
import { downCommand } from "./down.ts";
import { aliasCommand } from "./alias.ts";
import { cancelCommand } from "./cancel.ts";
import { prepareCommand } from "./prepare.ts";
import { serveCommand } from "./serve.ts";
import { trainCommand } from "./train.ts";
import { demoCommand } from "./demo.ts";
import { exportCommand } from "./export.ts";
import { likenessCommand } from "./likeness.ts";
import { type CommandSpec } from "./spec.ts";
import { uploadCommand } from "./upload.ts";
import { studioCommand } from "./studio.ts";


export const commands: readonly CommandSpec[] = [
  initCommand,
  doctorCommand,
  configCommand,
  prepareCommand,
  uploadCommand,
  trainCommand,
  statusCommand,
  cancelCommand,
  logsCommand,
  registerCommand,
  aliasCommand,
  deployCommand,
  generateCommand,
  exportCommand,
  likenessCommand,
  listCommand,
  downCommand,
  studioCommand,
  serveCommand,
  demoCommand,
];
