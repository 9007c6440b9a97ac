// Every v1 command, in help order. Commands not built yet answer "not available yet" with exit 2.
import { configCommand } from "./config.ts";
import { doctorCommand } from "./doctor.ts";
import { initCommand } from "./init.ts";
import { notAvailableYet, type CommandSpec } from "./spec.ts";

const name = { name: "name", description: "avatar name", required: true };

export const commands: readonly CommandSpec[] = [
  initCommand,
  doctorCommand,
  configCommand,
  notAvailableYet("prepare", "Validate and normalise a folder of selfies", ["avatar prepare ./selfies"], [
    { name: "dir", description: "folder of photos" },
  ]),
  notAvailableYet("upload", "Prepare a folder and upload it as a dataset", ["avatar upload ./selfies --name alice"], [
    { name: "dir", description: "folder of photos" },
  ]),
  notAvailableYet("train", "Prepare, upload, train a LoRA and register it", ["avatar train ./selfies --name alice"], [
    { name: "dir", description: "folder of photos" },
  ]),
  notAvailableYet("status", "Jobs, models and endpoints of an avatar", ["avatar status alice"], [name]),
  notAvailableYet("logs", "Training or serving logs", ["avatar logs alice"], [name]),
  notAvailableYet("register", "Register trained weights in the model registry", ["avatar register --name alice --run 20260101-120000"]),
  notAvailableYet("deploy", "Deploy an avatar to an endpoint", ["avatar deploy alice --gpu l4"], [name]),
  notAvailableYet("generate", "Generate images from prompts", ['avatar generate alice "{avatar} as an astronaut"'], [name]),
  notAvailableYet("list", "All avatars and their resources", ["avatar list"]),
  notAvailableYet("down", "Undeploy and delete an endpoint (stop billing)", ["avatar down alice"], [name]),
  notAvailableYet("serve", "Run handler.py locally the way the serving container does", ["avatar serve ./model"], [
    { name: "model-dir", description: "model directory" },
  ]),
  notAvailableYet("demo", "The whole pipeline on the local backend with a tiny model", ["avatar demo"]),
];
