import { describe, expect, it } from "vitest";
import { DETECTORS as API_DETECTORS } from "../../../../api/src/agent-access-policy.ts";
import {
  createDetectors,
  DETECTOR_IDS,
  type DetectorId,
  type FindHint,
  findAll,
  resolveOverlaps,
} from "./index.ts";
import { createPhoneDetector } from "./phone.ts";

const detectors = createDetectors();

function found(id: DetectorId, text: string, hint?: FindHint): string[] {
  const d = detectors.get(id);
  if (!d) throw new Error(`no detector ${id}`);
  return resolveOverlaps(d.find(text, hint)).map((f) => text.slice(f.start, f.end));
}

// [text, the values the detector must find in it (empty: none)]
type Table = [string, string[]][];

const RSA = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\nq3VbZ+/9k=\n-----END RSA PRIVATE KEY-----";
const PKCS8 = "-----BEGIN PRIVATE KEY-----\r\nMC4CAQAwBQYDK2VwBCIEIK\r\n-----END PRIVATE KEY-----";
const OPENSSH =
  "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
const PGP = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----";
const JWT =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const GHP = `ghp_${"A1b2C3d4E5".repeat(3)}f6G7h8`;
const PAT = `github_pat_11ABCDEFG0123456789012_${"a1B2c3D4e5".repeat(5)}f6G7h8I9j`;
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
// Catalogue fixtures in each service's published format: deterministic bodies of the right length
// and alphabet (a real key's body is random; these are not keys).
let seed = 7;
const body = (n: number, alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") =>
  Array.from({ length: n }, () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return alphabet[(seed >>> 16) % alphabet.length];
  }).join("");
const ANT = `sk-ant-api03-${body(93)}AA`;
const ANT_ADMIN = `sk-ant-admin01-${body(93)}AA`;
const OAI_PROJ = `sk-proj-${body(74)}T3BlbkFJ${body(74)}`;
const OAI_OLD = "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";
const STRIPE = "sk_live_51Hx8kQ2eZvKYlo2C9wX3mN7pR1sT8uW3yB6cE0fH5jK9aD2gJ";
const STRIPE_RK = "rk_live_51Hx8kQ2eZvKYlo2CaB3dE6gH9jK2mN5pQ8sT1vW4yZ7";
const GOOGLE = `AIza${body(35)}`;
const GITLAB = "glpat-Xk4vQ9zL2mN7pR1sT8uW";
const NPM = "npm_Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7Bc0Ef3Hi6";
const SENDGRID = "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";
const VAULT = `hvs.${body(95)}`;
const TWILIO = "SK3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e";
const DIGITALOCEAN = "dop_v1_3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";

const tables: Record<DetectorId, Table> = {
  email: [
    ["write to john.doe+tag@example.co.uk today", ["john.doe+tag@example.co.uk"]],
    ["a_b@sub.example.com, c@d.io.", ["a_b@sub.example.com", "c@d.io"]],
    ["<mailto:ops@corp.example>", ["ops@corp.example"]],
    ["user@example.com.123", ["user@example.com"]],
    [
      'quoted "jane doe"@example.org and m.o\'brien@example.ie',
      ['"jane doe"@example.org', "m.o'brien@example.ie"],
    ],
    ["'ann@example.com' and \"bob@example.com\"", ["ann@example.com", "bob@example.com"]],
    ["no tld a@b or user@localhost or x@y.c", []],
    ["@example.com and name@ and a@-b.com", []],
    ["https://user:pw@example.com/x", []], // URL userinfo, not a mailbox
    ["https://bot@github.com/org/repo", []],
    [`${"a".repeat(65)}@example.com`, []], // local part over 64
  ],
  creditCard: [
    ["visa 4111111111111111 mc 5555555555554444", ["4111111111111111", "5555555555554444"]],
    ["amex 378282246310005, discover 6011111111111117.", ["378282246310005", "6011111111111117"]],
    [
      "jcb 3530111333300000 mc2 2223003122003222 visa13 4222222222222",
      ["3530111333300000", "2223003122003222", "4222222222222"],
    ],
    ["spaced 4111 1111 1111 1111 dashed 4111-1111-1111-1111", ["4111 1111 1111 1111", "4111-1111-1111-1111"]],
    ["19 digits 4000000000000000006 / 6211111111111111116", ["4000000000000000006", "6211111111111111116"]],
    ["qty 2 4111 1111 1111 1111 each", ["4111 1111 1111 1111"]],
    [
      "amex 3782 822463 10005 diners 3056 930902 5904 maestro 6759 6498 2643 8453 003",
      ["3782 822463 10005", "3056 930902 5904", "6759 6498 2643 8453 003"],
    ],
    ["bad luhn 4111111111111112 and 5555 5555 5555 4445", []],
    ["Luhn-valid but no network issues it: 3000000000000000004 2100000000000008 5900000000000000", []],
    ["uuid 123e4567-e89b-12d3-a456-426614174000", []],
    ["digit uuid 41111111-1111-1111-1111-111111111111", []],
    ["ms timestamp 1718236812345, 12 digits 411111111111", []],
    ["glued v4111111111111111 4111111111111111x 3.4111111111111111", []],
    ["too long 41111111111111111111111 and 0000000000000000", []],
    ["double space 4111  1111  1111  1111", []],
  ],
  usSsn: [
    ["ssn 123-45-6789 and 078-05-1120", ["123-45-6789", "078-05-1120"]],
    ["SSN: 123456789, social security number 234567890", ["123456789", "234567890"]],
    ['{"ssn":"345678901"}', ["345678901"]],
    ["area 000-12-3456 666-12-3456 900-12-3456 999-12-3456", []],
    ["group 123-00-6789 serial 123-45-0000", []],
    ["SSN 536 22 1234, social security number 219 09 9999", ["536 22 1234", "219 09 9999"]],
    ["spaced 536 22 1234 without a label, mixed SSN 536 22-1234", []],
    ["bare 123456789 without a label", []],
    ["date 2024-01-15, phone 555-123-4567, long 123-45-67890, 1123-45-6789", []],
    ["SSN: 000123456", []],
  ],
  iban: [
    ["DE89370400440532013000", ["DE89370400440532013000"]],
    ["pay GB82 WEST 1234 5698 7654 32 now", ["GB82 WEST 1234 5698 7654 32"]],
    [
      "FR1420041010050500013M02606, NL91ABNA0417164300.",
      ["FR1420041010050500013M02606", "NL91ABNA0417164300"],
    ],
    ["NO9386011117947 CH9300762011623852957", ["NO9386011117947", "CH9300762011623852957"]],
    ["bad checksum DE89370400440532013001", []],
    ["short DE8937040044053201300 long DE893704004405320130001", []],
    ["spaced too long DE89 3704 0044 0532 0130 0012", []],
    ["unknown country XX89370400440532013000, glued aDE89370400440532013000", []],
  ],
  phone: [
    ["call +1 (213) 373-4253 now", ["+1 (213) 373-4253"]],
    ["213-373-4253 or 213.373.4253", ["213-373-4253", "213.373.4253"]],
    ["uk +44 20 7946 0958, de +49 30 901820", ["+44 20 7946 0958", "+49 30 901820"]],
    ["two +44 20 7946 0958 +1 213 373 4253", ["+44 20 7946 0958", "+1 213 373 4253"]],
    ["(213) 373-4253 (415) 555-0132", ["(213) 373-4253", "(415) 555-0132"]],
    ["version 1.2.3, count 1234567, ip 192.168.100.200", []],
    ["date 2024-01-15 10:30, card 4111 1111 1111 1111", []],
    ["glued x2133734253y and id2133734253", []],
    ["uk national without default country 020 7946 0958", []],
  ],
  ipv4: [
    ["host 10.0.0.1 and 192.168.1.255.", ["10.0.0.1", "192.168.1.255"]],
    ["dns=8.8.8.8;cidr 172.16.0.0/12 [127.0.0.1]:80", ["8.8.8.8", "172.16.0.0", "127.0.0.1"]],
    ["version 1.2.3.4.5 and v1.2.3.4 and 1.2.3", []],
    ["out of range 256.1.1.1, leading zero 01.2.3.4", []],
  ],
  ipv6: [
    ["addr 2001:db8::1 and fe80::1.", ["2001:db8::1", "fe80::1"]],
    [
      "mapped ::ffff:192.168.1.1 full 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
      ["::ffff:192.168.1.1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"],
    ],
    ["url http://[2001:db8::42]:443/", ["2001:db8::42"]],
    ["code std::vector Base::add a[1::2] and ::", []],
    ["time 12:30:45, mac 00:1A:2B:3C:4D:5E, ratio 1:2", []],
  ],
  awsAccessKey: [
    ["id AKIAIOSFODNN7EXAMPLE", ["AKIAIOSFODNN7EXAMPLE"]],
    ["temp=ASIAY34FZKBOKMUTVV7A,", ["ASIAY34FZKBOKMUTVV7A"]],
    ["short AKIAIOSFODNN7EXAMPL long AKIAIOSFODNN7EXAMPLEX glued XAKIAIOSFODNN7EXAMPLE", []],
    ["lower akiaiosfodnn7example other AIDAIOSFODNN7EXAMPLE", []],
  ],
  awsSecretKey: [
    [`aws_secret_access_key = ${SECRET}`, [SECRET]],
    [`{"SecretAccessKey": "${SECRET}"}`, [SECRET]],
    [`AWS_SECRET_ACCESS_KEY=${SECRET}\n`, [SECRET]],
    [`token ${SECRET}`, []], // 40 characters alone are not enough
    [`aws_secret_access_key = ${SECRET}X`, []],
  ],
  githubToken: [
    [`token ${GHP}`, [GHP]],
    [
      `gho_${"x".repeat(36)} ghs_${"Y".repeat(36)} ghu_${"1".repeat(36)} ghr_${"z".repeat(36)}`,
      [`gho_${"x".repeat(36)}`, `ghs_${"Y".repeat(36)}`, `ghu_${"1".repeat(36)}`, `ghr_${"z".repeat(36)}`],
    ],
    [`fine-grained ${PAT}`, [PAT]],
    [`ghp_short ghx_${"a".repeat(36)} xghp_${"a".repeat(36)}`, []],
  ],
  slackToken: [
    [
      "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
      ["xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"],
    ],
    ["user xoxp-1234567890-1234567890-abcdef", ["xoxp-1234567890-1234567890-abcdef"]],
    [
      "hook https://hooks.slack.com/services/T0000AAAA/B0000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX done",
      ["https://hooks.slack.com/services/T0000AAAA/B0000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX"],
    ],
    [
      "app xapp-1-A0123456789-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
      ["xapp-1-A0123456789-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9"],
    ],
    ["xoxz-1234567890-abc xoxb-short https://hooks.slack.com/", []],
  ],
  jwt: [
    [`Authorization: Bearer ${JWT}`, [JWT]],
    [`alg none eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0. end`, ["eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."]],
    ["two segments eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0", []],
    ["header without alg eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig", []],
    ["not json eyJzzzzzzz.abc.def", []],
  ],
  privateKey: [
    [`key:\n${RSA}\nafter`, [RSA]],
    [`${PKCS8} and ${OPENSSH}`, [PKCS8, OPENSSH]],
    [`pgp ${PGP}`, [PGP]],
    [`json {"k":"${RSA.replace(/\n/g, "\\n")}"}`, [RSA.replace(/\n/g, "\\n")]],
    ["truncated -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI", ["-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI"]],
    ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", []],
    ["-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", []],
  ],
  secretCatalogue: [
    [`ANTHROPIC_API_KEY=${ANT}`, [ANT]],
    [`{"key":"${ANT_ADMIN}"}`, [ANT_ADMIN]],
    [`export OPENAI_API_KEY=${OAI_PROJ}\n`, [OAI_PROJ]],
    [`legacy ${OAI_OLD} `, [OAI_OLD]],
    [`${STRIPE} and ${STRIPE_RK}`, [STRIPE, STRIPE_RK]],
    [`maps?key=${GOOGLE}&v=3`, [GOOGLE]],
    [`${GITLAB} ${NPM}`, [GITLAB, NPM]],
    [`SENDGRID_API_KEY='${SENDGRID}'`, [SENDGRID]],
    [`VAULT_TOKEN=${VAULT}`, [VAULT]],
    [`sid ${TWILIO} token`, [TWILIO]],
    [`"${DIGITALOCEAN}"`, [DIGITALOCEAN]],
    // Look-alikes: prefixes in prose, UUIDs, SHAs, hashes, base64 blobs, versions, truncated keys.
    ["keys use the sk_test_ and sk_live_ prefixes; sk-ant-api03- keys end in AA", []],
    ["uuid 123e4567-e89b-12d3-a456-426614174000 sha 3f2b8c1e9a474d2b8e0f6c5a1b2d3e4f5a6b7c8d", []],
    [
      `sha256:${"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"} md5 d41d8cd98f00b204e9800998ecf8427e`,
      [],
    ],
    [`blob ${"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk="}`, []],
    ["version 8.30.1, sk-ant-api03-short, glpat-tooShort, AIzaShort", []],
    [`${ANT.slice(0, -2)}XY`, []], // an Anthropic key ends in AA
    [`stripe sk_live_${"a".repeat(30)}`, []], // too little entropy for a real key
  ],
  keywordSecret: [
    ["password=hunter2x", ["hunter2x"]],
    ['DB_PASSWORD: "S3cr3t-P4ss!"', ["S3cr3t-P4ss!"]],
    ["client_secret = 'q8Xv2Lm5Np8Rt1Wz4Bc6'", ["q8Xv2Lm5Np8Rt1Wz4Bc6"]],
    [
      "DefaultEndpointsProtocol=https;AccountName=logs;AccountKey=Xk4vQ9zL2mN7pR1sT8uW3yB6cE0fH5jK9aD2gJ7lO4qS1vY8xZ3bC6eF0hI5kM9nP2rU7tW4Ab6Cd3Ef6Gh9==;EndpointSuffix=core.windows.net",
      ["Xk4vQ9zL2mN7pR1sT8uW3yB6cE0fH5jK9aD2gJ7lO4qS1vY8xZ3bC6eF0hI5kM9nP2rU7tW4Ab6Cd3Ef6Gh9=="],
    ],
    [
      "//registry.example.com/:_authToken=3f9a1c7e-5b2d-8f4a-6c0e-9b7d5f3a1c8e",
      ["3f9a1c7e-5b2d-8f4a-6c0e-9b7d5f3a1c8e"],
    ],
    [
      "https://acct.blob.core.windows.net/c/f?sv=2022-11-02&se=2026&sig=Xk4vQ9zL2mN7pR1sT8uW3yB6%2Bc",
      ["Xk4vQ9zL2mN7pR1sT8uW3yB6%2Bc"],
    ],
    ["password: required", []],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell reference, not a template
    ["password = ${DB_PASSWORD}, token: {{ .Values.token }}, api_key=<your-key>", []],
    ["secret: changeme; apiKey: xxxxxxxxxxxxxxxx; token=null", []],
    ["the token endpoint said 401; monkey=bananas; keyboard: qwertyuiop", []],
    ['"next_page_token": "Ab3De6Gh9Jk2Mn5Pq8St1Vw4"', []],
    ["api_key=aaaaaaaaaaaaaaaaaaaaaa", []], // no entropy
  ],
  urlCredentials: [
    ["postgres://admin:s3cr3t@db:5432/app", ["s3cr3t"]],
    ["https://user:p@ss@host/path", ["p@ss"]],
    ['redis://:hunter2@cache:6379 "amqp://u:pw%40x@mq/"', ["hunter2", "pw%40x"]],
    ["https://user@host/ and https://host:8080/a@b and mailto:a@b.com", []],
    ["git+ssh://git:@host/repo", []],
  ],
};

describe("detector registry", () => {
  it("has a detector for every id, in DETECTOR_IDS order", () => {
    expect([...detectors.keys()]).toEqual([...DETECTOR_IDS]);
    for (const [id, d] of detectors) expect(d.id).toBe(id);
  });

  it("covers every detector the AgentAccessPolicy CRD accepts", () => {
    for (const name of API_DETECTORS)
      if (name !== "all" && name !== "secrets") expect(DETECTOR_IDS).toContain(name);
  });
});

for (const id of DETECTOR_IDS) {
  describe(id, () => {
    it.each(tables[id])("%j", (text, expected) => {
      expect(found(id, text)).toEqual(expected);
    });
  });
}

// The SWIFT IBAN registry's example IBAN of every SEPA country.
// biome-ignore format: a list
const SEPA_IBANS = [
  "AT611904300234573201", "BE68539007547034", "BG80BNBG96611020345678", "HR1210010051863000160",
  "CY17002001280000001200527600", "CZ6508000000192000145399", "DK5000400440116243", "EE382200221020145685",
  "FI2112345600000785", "FR1420041010050500013M02606", "DE89370400440532013000", "GR1601101250000000012300695",
  "HU42117730161111101800000000", "IE29AIBK93115212345678", "IT60X0542811101000000123456", "LV80BANK0000435195001",
  "LT121000011101001000", "LU280019400644750000", "MT84MALT011000012345MTLCAST001S", "NL91ABNA0417164300",
  "PL61109010140000071219812874", "PT50000201231234567890154", "RO49AAAA1B31007593840000", "SK3112000000198742637541",
  "SI56263300012039086", "ES9121000418450200051332", "SE4550000000058398257466", "IS140159260076545510730339",
  "LI21088100002324013AA", "NO9386011117947", "CH9300762011623852957", "GB29NWBK60161331926819",
  "SM86U0322509800000000270100", "VA59001123000012345678", "AD1200012030200359100100", "MC5811222000010123456789030",
  "GI75NWBK000000007099453", "AL47212110090000000235698741", "MD24AG000225100013104168", "ME25505000012345678951",
  "MK07250120000058984", "RS35260005601001611379",
];

describe("iban: every SEPA country", () => {
  it.each(SEPA_IBANS)("%s compact, grouped, and with a wrong check digit", (value) => {
    const grouped = value.replace(/(.{4})(?=.)/g, "$1 ");
    expect(found("iban", `pay ${value}.`)).toEqual([value]);
    expect(found("iban", `IBAN: ${grouped} thanks`)).toEqual([grouped]);
    const last = value.slice(-1);
    const wrong =
      value.slice(0, -1) + (last === "0" ? "1" : /\d/.test(last) ? "0" : last === "A" ? "B" : "A");
    expect(found("iban", wrong)).toEqual([]);
  });
});

describe("context hints", () => {
  it("bare nine digits are an SSN only in an SSN-named field", () => {
    expect(found("usSsn", "123456789", { key: "customer_ssn" })).toEqual(["123456789"]);
    expect(found("usSsn", "123456789", { key: "socialSecurityNumber" })).toEqual(["123456789"]);
    expect(found("usSsn", "123456789", { key: "classname" })).toEqual([]);
    expect(found("usSsn", "666456789", { key: "ssn" })).toEqual([]);
  });

  it("a bare 40-character value is an AWS secret only in a secret-key-named field", () => {
    expect(found("awsSecretKey", SECRET, { key: "SecretAccessKey" })).toEqual([SECRET]);
    expect(found("awsSecretKey", SECRET, { key: "aws_secret_access_key" })).toEqual([SECRET]);
    expect(found("awsSecretKey", SECRET, { key: "etag" })).toEqual([]);
  });

  it("JSON numbers are phones only in phone-named fields", () => {
    expect(found("phone", "2133734253", { numeric: true, key: "id" })).toEqual([]);
    expect(found("phone", "2133734253", { numeric: true, key: "mobilePhone" })).toEqual(["2133734253"]);
    expect(found("phone", "2133734253", { key: "id" })).toEqual(["2133734253"]);
  });

  it("the phone default country is configurable", () => {
    const gb = createPhoneDetector({ defaultCountry: "GB" });
    const text = "ring 020 7946 0958";
    expect(gb.find(text).map((f) => text.slice(f.start, f.end))).toEqual(["020 7946 0958"]);
  });
});

describe("overlap resolution", () => {
  it("merges overlapping findings into one span labelled by the longest", () => {
    expect(
      resolveOverlaps([
        { start: 10, end: 20, detector: "phone" },
        { start: 0, end: 5, detector: "email" },
        { start: 12, end: 40, detector: "creditCard" },
        { start: 40, end: 45, detector: "ipv4" },
      ]),
    ).toEqual([
      { start: 0, end: 5, detector: "email" },
      { start: 10, end: 40, detector: "creditCard" },
      { start: 40, end: 45, detector: "ipv4" },
    ]);
  });

  it("keeps the earliest of equally long findings and drops empty ones", () => {
    expect(
      resolveOverlaps([
        { start: 5, end: 10, detector: "iban" },
        { start: 3, end: 8, detector: "phone" },
        { start: 1, end: 1, detector: "email" },
      ]),
    ).toEqual([{ start: 3, end: 10, detector: "phone" }]);
  });

  it("findAll runs several detectors and resolves their overlaps", () => {
    const text = `see https://admin:${GHP}@git.example.com and ${RSA}`;
    const all = findAll(text, detectors.values());
    expect(all.map((f) => [f.detector, text.slice(f.start, f.end)])).toEqual([
      ["githubToken", GHP],
      ["privateKey", RSA],
    ]);
  });
});
