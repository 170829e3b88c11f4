// Slack tokens (xoxb- bot, xoxp- user, xoxa-/xoxr- app and refresh, xoxs- session, xoxe- config,
// xapp- app-level)
// and incoming-webhook URLs, which are credentials in themselves.
import { pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

const TOKEN = /(?<![A-Za-z0-9_-])(?:xox[abeprs]|xapp)-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9_-])/g;
const WEBHOOK = /(?:https?:\/\/)?hooks\.slack\.com\/(?:services|workflows|triggers)\/[A-Za-z0-9_/-]{8,200}/g;

export const slackToken: Detector = {
  id: "slackToken",
  maxLength: 256,
  keywords: ["xox", "xapp-", "hooks.slack.com"],
  lookBehind: 1,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    for (const re of [TOKEN, WEBHOOK])
      for (const m of text.matchAll(re))
        out.push({ start: m.index, end: m.index + m[0].length, detector: "slackToken" });
    return out;
  },
};
