// Every v1 command, in help order. Commands not built yet answer "not available yet" with exit 2.
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
import { prepareCommand } from "./prepare.ts";
import { notAvailableYet, type CommandSpec } from "./spec.ts";
import { uploadCommand } from "./upload.ts";


export const commands: readonly CommandSpec[] = [
  initCommand,
  doctorCommand,
  configCommand,
  prepareCommand,
  uploadCommand,
  notAvailableYet("train", "Prepare, upload, train a LoRA and register it", ["avatar train ./selfies --name alice"], [
    { name: "dir", description: "folder of photos" },
  ]),
  statusCommand,
  logsCommand,
  registerCommand,
  deployCommand,
  generateCommand,
  listCommand,
  downCommand,
  notAvailableYet("serve", "Run handler.py locally the way the serving container does", ["avatar serve ./model"], [
    { name: "model-dir", description: "model directory" },
  ]),
  notAvailableYet("demo", "The whole pipeline on the local backend with a tiny model", ["avatar demo"]),
];
